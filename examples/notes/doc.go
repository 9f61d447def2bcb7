// Command notes is a small multi-tenant HTTP service over the table public.notes (the one `make
// dev` creates under the sample TenantTable), written with the SDK pkg/tenancy: the middleware
// verifies authd's access tokens, guards check the token's permissions, and every query runs
// through tenancy.WithTenant, so PostgreSQL's row-level security decides which notes a request
// sees. The handlers never filter by organization themselves.
//
//	GET    /notes        the organization's notes (permission data:read)
//	POST   /notes        {"body": "…"} adds a note (data:write)
//	DELETE /notes/{id}   deletes a note (data:delete); 404 for notes the caller cannot see
//
// Configuration (environment):
//
//	NOTES_DATABASE_URL  libpq URL of a login that is a member of tenancy_app (required)
//	TENANCY_ISSUER      authd's issuer, also where its JWKS is (default http://localhost:8090)
//	TENANCY_AUDIENCE    the tokens' audience (default tenancy)
//	NOTES_LISTEN        address to listen on (default 127.0.0.1:8070)
//
// See docs/rls-guide.md.
package main
