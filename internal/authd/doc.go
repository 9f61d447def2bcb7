// Package authd is the auth service: logins, sessions with rotating refresh tokens, API-key
// tokens (OAuth2 client_credentials), revocation, introspection, invitations, signup and the
// JWKS, plus the self-service REST API and web pages through which people manage their
// organizations. It is stateless apart from PostgreSQL and the signing keys the manager keeps in
// a Secret; it changes tenants' objects only through the Kubernetes API, as the person asking.
package authd
