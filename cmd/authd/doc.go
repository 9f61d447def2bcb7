// Command authd is Tenancy's auth service: logins and sessions, API-key tokens, revocation,
// introspection, invitations and the JWKS that applications verify tokens with.
package main
