// Package tenancy is the Go SDK for applications behind Tenancy: an http middleware that verifies
// authd's access tokens against its JWKS, role and permission guards, and a pgx helper that runs
// queries with the token's request context so that PostgreSQL's row-level security applies.
package tenancy
