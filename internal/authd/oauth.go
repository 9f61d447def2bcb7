package authd

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tenancy-dev/tenancy/internal/apikey"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// token is the OAuth2 token endpoint (RFC 6749): client_credentials with an API key (client_id
// the key id, client_secret the key; HTTP Basic or form); authorization_code and refresh_token
// for OAuth clients; refresh_token of authd's own sessions without a client.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	switch grantType := r.PostForm.Get("grant_type"); grantType {
	case "client_credentials":
		s.clientCredentials(w, r)
	case grantAuthorizationCode:
		s.authorizationCodeGrant(w, r)
	case grantTokenExchange:
		s.tokenExchange(w, r)
	case grantRefreshToken:
		if hasClientAuthentication(r) {
			client, err := s.authenticateClient(r)
			switch {
			case errors.Is(err, errInvalidClient):
				invalidClient(w, r)
			case err != nil:
				s.failed(w, r, err)
			default:
				s.clientRefresh(w, r, client)
			}
			return
		}
		resp, code, err := s.refreshTokens(r, refreshRequest{
			RefreshToken: r.PostForm.Get("refresh_token"), Organization: r.PostForm.Get("organization"), Project: r.PostForm.Get("project"),
		})
		if code == "access_denied" || code == "membership_not_active" {
			code = "invalid_grant" // RFC 6749 has no access_denied at the token endpoint
		}
		if err != nil {
			s.refreshFailed(w, r, code, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	case "":
		writeError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
	default:
		writeError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code, refresh_token, client_credentials or "+grantTokenExchange)
	}
}

// clientCredentials trades an API key for an access token with the key's organization, project
// and role. The key is checked against the database on every request, so a deleted, expired or
// revoked key stops working at once.
func (s *Server) clientCredentials(w http.ResponseWriter, r *http.Request) {
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	invalidClient := func() {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="tenancy"`)
		}
		writeError(w, http.StatusUnauthorized, "invalid_client", "the client_id or client_secret is wrong, or the key is revoked or expired")
	}
	key, found, err := s.apiKeyFor(r, id, secret)
	var guesses *tooManyKeyGuesses
	if errors.As(err, &guesses) {
		s.answerError(w, r, slowDown(w, guesses.wait))
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if !found {
		invalidClient()
		return
	}
	g := grant{Subject: key.KeyID, ClientID: key.KeyID, APIKeyID: key.ID, OrgID: key.OrgID, Role: key.Role}
	if key.ProjectID != nil {
		g.Project = *key.ProjectID
	}
	access, expiresIn, err := s.tokens.issue(r.Context(), g)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	s.keyUse.record(key.ID)
	s.metrics.tokens.WithLabelValues("client_credentials").Inc()
	s.audit(r, auditEntry{Actor: "apikey:" + key.KeyID, ActorKeyID: &key.ID, Action: "token.issued", Target: "apikey/" + key.KeyID,
		OrgID: &key.OrgID, Details: map[string]any{"grant": "client_credentials", "role": key.Role}})
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: expiresIn, Organization: key.OrgName})
}

// apiKeyFor finds the working key that id and secret present: a Tenancy key, whose id must be
// the one in the key, or a key imported from the system Tenancy replaced (tenancy import), which
// has another shape: its id is the one the import gave it, or empty for clients that only ever
// knew the key, and it works until the date the import set. Imported keys may be short enough
// to guess, so a client address that misses with keys of that shape is slowed down like failed
// logins of one account (*tooManyKeyGuesses says how long to wait).
func (s *Server) apiKeyFor(r *http.Request, id, secret string) (apiKey, bool, error) {
	keyID, err := apikey.Parse(secret)
	if err == nil {
		if keyID != id {
			return apiKey{}, false, nil
		}
		return s.store.apiKeyByHash(r.Context(), apikey.Hash(secret), false)
	}
	if secret == "" || len(secret) > maxImportedKeyLength {
		return apiKey{}, false, nil
	}
	address, now := s.clientOf(r).Address, time.Now()
	if wait := s.keyGuesses.wait(address, now); wait > 0 {
		return apiKey{}, false, &tooManyKeyGuesses{wait: wait}
	}
	key, found, err := s.store.apiKeyByHash(r.Context(), apikey.Hash(secret), true)
	if err != nil {
		return apiKey{}, false, err
	}
	if !found || (id != "" && id != key.KeyID) {
		s.keyGuesses.fail(address, now)
		return apiKey{}, false, nil
	}
	return key, true, nil
}

// tooManyKeyGuesses refuses a key of another shape from an address that missed too often.
type tooManyKeyGuesses struct{ wait time.Duration }

func (e *tooManyKeyGuesses) Error() string {
	return fmt.Sprintf("too many unknown keys from this address; retry in %d seconds", retryAfterSeconds(e.wait))
}

// maxImportedKeyLength bounds what is hashed for a key of another shape.
const maxImportedKeyLength = 512

// revoke is RFC 7009: a refresh token ends its session (its whole family). Access tokens are
// self-contained and live out their 15 minutes, so revoking one is refused as unsupported.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	token := r.PostForm.Get("token")
	if !strings.HasPrefix(token, refreshTokenPrefix) {
		writeError(w, http.StatusBadRequest, "unsupported_token_type", "only refresh tokens can be revoked; access tokens expire by themselves")
		return
	}
	if err := s.endSession(r, token, "session.revoked"); err != nil {
		s.failed(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// introspect is RFC 7662. The caller authenticates with an API key (HTTP Basic) or an access
// token of an organization, and learns only about tokens of that organization; an unknown,
// expired or revoked token, or one whose key or user is gone, is {"active": false}.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	callerOrg, ok := s.introspectionCaller(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="tenancy", Bearer`)
		writeError(w, http.StatusUnauthorized, "invalid_client", "introspection needs an API key (HTTP Basic) or an access token")
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	token := r.PostForm.Get("token")
	inactive := map[string]any{"active": false}
	if strings.HasPrefix(token, refreshTokenPrefix) {
		active, userID, orgID, expires, err := s.store.refreshTokenState(r.Context(), token)
		if err != nil {
			s.failed(w, r, err)
			return
		}
		if !active || orgID == nil || *orgID != callerOrg {
			writeJSON(w, http.StatusOK, inactive)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"active": true, "token_type": "refresh_token", "sub": userID, "exp": expires.Unix(), "iss": s.cfg.Issuer})
		return
	}
	claims, err := s.verifier.Verify(r.Context(), token)
	if err != nil || claims.Org != callerOrg {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	live, err := s.principalLive(r, claims)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if !live {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"active": true, "token_type": "access_token", "iss": claims.Issuer, "sub": claims.Subject, "aud": claims.Audience,
		"client_id": claims.ClientID, "exp": claims.ExpiresAt.Unix(), "iat": claims.IssuedAt.Unix(), "jti": claims.ID,
		"org": claims.Org, "project": claims.Project, "role": claims.Role, "scope": claims.Scope,
	})
}

// introspectionCaller checks the caller's credentials — a valid API key, or an access token of
// an organization — and returns the caller's organization.
func (s *Server) introspectionCaller(r *http.Request) (string, bool) {
	if id, secret, ok := r.BasicAuth(); ok {
		key, found, err := s.apiKeyFor(r, id, secret)
		return key.OrgID, err == nil && found
	}
	claims, ok := s.bearer(r)
	if !ok || claims.Org == "" {
		return "", false
	}
	return claims.Org, true
}

// principalLive reports whether a token's principal still holds what the token says: the API
// key valid; the user enabled, with an Active membership in the token's organization (and
// project) that grants at least the token's role.
func (s *Server) principalLive(r *http.Request, claims *tenancy.Claims) (bool, error) {
	if claims.IsAPIKey() {
		return s.store.apiKeyLive(r.Context(), claims.Subject)
	}
	return s.store.userHoldsRole(r.Context(), claims.Subject, claims.Org, claims.Project, claims.Role)
}
