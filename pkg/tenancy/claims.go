package tenancy

import (
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// TokenType is the JOSE "typ" of access tokens (RFC 9068).
const TokenType = "at+jwt"

// The roles, lowest first; the spellings of the custom resources and the database.
const (
	RoleViewer = "Viewer"
	RoleMember = "Member"
	RoleAdmin  = "Admin"
	RoleOwner  = "Owner"
)

// Claims are an access token's claims.
type Claims struct {
	jwt.RegisteredClaims
	// ClientID is the OAuth2 client: an API key's id, "tenancy" for a person's session with
	// authd, or the client_id of the OAuthClient a person signed in to.
	ClientID string `json:"client_id"`
	// Org is the organization's id; empty in a token that only /auth/me accepts.
	Org string `json:"org,omitempty"`
	// Project is the project's id when the token is scoped to one.
	Project string `json:"project,omitempty"`
	// Role is the principal's role in the token's organization (or project).
	Role string `json:"role,omitempty"`
	// Scope lists the permissions the role grants, space-separated.
	Scope string `json:"scope,omitempty"`
	// TCtx is the signed request context for tenancy.context (see WithTenant).
	TCtx string `json:"tctx,omitempty"`
	// SessionID is the session (refresh token family) a person's token was issued in.
	SessionID string `json:"sid,omitempty"`
	// AMR lists how the person authenticated (RFC 8176): "pwd", and "otp" after a second factor.
	AMR []string `json:"amr,omitempty"`
	// Act names who acts for the subject (RFC 8693 section 4.1): the service a token was
	// delegated to, or the platform admin impersonating the person. Nil in a token the subject
	// uses themselves.
	Act *Actor `json:"act,omitempty"`
}

// Actor is the party of an act claim.
type Actor struct {
	// Subject is the actor: an OAuth client's client_id for a delegation, a Kubernetes username
	// for an impersonation.
	Subject string `json:"sub"`
	// Impersonation: a platform admin acting as the person (support), with Reason given.
	Impersonation bool   `json:"impersonation,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// SessionClientID is the client_id of tokens issued to people.
const SessionClientID = "tenancy"

// HasSecondFactor reports whether the person's session began with a second factor.
func (c *Claims) HasSecondFactor() bool { return slices.Contains(c.AMR, "otp") }

// IsAPIKey reports whether the token was issued to an API key rather than a person: an API
// key's token is the client's own (sub is client_id, RFC 9068), a person's names the person,
// whichever client (authd's sessions or an OAuth client) it was issued to.
func (c *Claims) IsAPIKey() bool { return c.Subject == c.ClientID }

// HasRole reports whether the token's role is min or above on the ladder Viewer < Member <
// Admin < Owner. It is as fresh as the token (15 minutes by default); tenancy.has_role in the
// database is the live check.
func (c *Claims) HasRole(min string) bool {
	return rank(c.Role) >= rank(min) && rank(min) > 0
}

// HasPermission reports whether the token's scope lists permission.
func (c *Claims) HasPermission(permission string) bool {
	return slices.Contains(strings.Fields(c.Scope), permission)
}

func rank(role string) int {
	return slices.Index([]string{RoleViewer, RoleMember, RoleAdmin, RoleOwner}, role) + 1
}

// rolePermissions is what each role adds to the one below it.
var rolePermissions = [][]string{
	{"organization:read", "projects:read", "members:read", "apikeys:read", "data:read"}, // Viewer
	{"data:write"}, // Member
	{"projects:write", "members:write", "apikeys:write", "audit:read", "data:delete"}, // Admin
	{"organization:write", "owners:write"},                                            // Owner
}

// Permissions lists what role grants, for the scope claim; docs/auth.md has the table.
func Permissions(role string) []string {
	var perms []string
	for i := range rank(role) {
		perms = append(perms, rolePermissions[i]...)
	}
	return perms
}
