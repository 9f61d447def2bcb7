package authd

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tenancy-dev/tenancy/internal/signing"
)

// The token endpoint's OpenID Connect side: the authorization code grant, refreshes of a
// client's session, and the ID tokens of both.

// idTokenClaims are an ID token's claims (OpenID Connect Core section 2).
type idTokenClaims struct {
	jwt.RegisteredClaims
	AuthTime      int64    `json:"auth_time"`
	Nonce         string   `json:"nonce,omitempty"`
	AMR           []string `json:"amr,omitempty"`
	AZP           string   `json:"azp"`
	AtHash        string   `json:"at_hash,omitempty"`
	SessionID     string   `json:"sid,omitempty"`
	Email         string   `json:"email,omitempty"`
	EmailVerified *bool    `json:"email_verified,omitempty"`
	Name          string   `json:"name,omitempty"`
	Org           string   `json:"org"`
	OrgName       string   `json:"org_name"`
	Role          string   `json:"role"`
}

// idTokenType is the JOSE typ of ID tokens.
const idTokenType = "JWT"

// clientSession is what the tokens of a client's sign-in say about the person.
type clientSession struct {
	Client   oauthClient
	User     user
	Access   access
	Scopes   []string
	AuthTime time.Time
	MFA      bool
	Nonce    string
	Family   string // the session's refresh token family, when it has one
}

// issueClientTokens answers a code exchange or a client's refresh: an access token for the
// client, an ID token when openid was granted, and refresh (when not empty).
func (s *Server) issueClientTokens(r *http.Request, cs clientSession, refresh, grantType string) (map[string]any, error) {
	g := grant{Subject: cs.User.ID, ClientID: cs.Client.ClientID, UserID: cs.User.ID, Role: cs.Access.Role, Session: cs.Family,
		MFA: cs.MFA, TTL: cs.Client.AccessTTL, Scopes: cs.Scopes}
	if cs.Access.OrgID != nil {
		g.OrgID = *cs.Access.OrgID
	}
	if cs.Access.ProjectID != nil {
		g.Project = *cs.Access.ProjectID
	}
	accessToken, expiresIn, err := s.tokens.issue(r.Context(), g)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{"access_token": accessToken, "token_type": "Bearer", "expires_in": expiresIn,
		"scope": strings.Join(cs.Scopes, " "), "organization": cs.Access.OrgName}
	if slices.Contains(cs.Scopes, scopeOpenID) {
		idToken, err := s.tokens.issueIDToken(cs, accessToken, s.tokens.ttlFor(g))
		if err != nil {
			return nil, err
		}
		resp["id_token"] = idToken
	}
	if refresh != "" {
		resp["refresh_token"] = refresh
	}
	s.metrics.tokens.WithLabelValues(grantType).Inc()
	s.audit(r, auditEntry{Actor: cs.User.Email, ActorUserID: &cs.User.ID, Action: "token.issued", Target: "user/" + cs.User.Email,
		OrgID: cs.Access.OrgID, Details: map[string]any{"grant": grantType, "role": cs.Access.Role, "client_id": cs.Client.ClientID}})
	return resp, nil
}

// issueIDToken signs the ID token of cs, next to accessToken, valid for ttl.
func (i *tokenIssuer) issueIDToken(cs clientSession, accessToken string, ttl time.Duration) (string, error) {
	set := i.keys.Keys()
	if set == nil {
		return "", errNoSigningKey
	}
	now := time.Now()
	key, ok := set.Signer(now)
	if !ok {
		return "", errNoSigningKey
	}
	claims := idTokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: i.issuer, Subject: cs.User.ID, Audience: jwt.ClaimStrings{cs.Client.ClientID},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), IssuedAt: jwt.NewNumericDate(now),
		},
		AuthTime: cs.AuthTime.Unix(), Nonce: cs.Nonce, AMR: []string{"pwd"}, AZP: cs.Client.ClientID,
		AtHash: tokenHash(key.Alg, accessToken), SessionID: cs.Family, OrgName: cs.Access.OrgName, Role: cs.Access.Role,
	}
	if cs.MFA {
		claims.AMR = append(claims.AMR, "otp")
	}
	if cs.Access.OrgID != nil {
		claims.Org = *cs.Access.OrgID
	}
	if slices.Contains(cs.Scopes, scopeEmail) {
		verified := cs.User.EmailVerified
		claims.Email, claims.EmailVerified = cs.User.Email, &verified
	}
	if slices.Contains(cs.Scopes, scopeProfile) {
		claims.Name = cs.User.DisplayName
	}
	return sign(key, idTokenType, claims)
}

// tokenHash is at_hash (OpenID Connect Core section 3.1.3.6): the left half of the token's hash
// with the hash of the signature's algorithm — SHA-256 for ES256, SHA-512 for Ed25519.
func tokenHash(alg, token string) string {
	h := sha256.New
	if alg == signing.EdDSA {
		h = sha512.New
	}
	digest := h()
	digest.Write([]byte(token))
	sum := digest.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// authorizationCodeGrant exchanges a code for tokens (RFC 6749 section 4.1.3, RFC 7636).
func (s *Server) authorizationCodeGrant(w http.ResponseWriter, r *http.Request) {
	client, err := s.authenticateClient(r)
	if errors.Is(err, errInvalidClient) {
		invalidClient(w, r)
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if !client.allows(grantAuthorizationCode) {
		writeError(w, http.StatusBadRequest, "unauthorized_client", "this client may not use the authorization code grant")
		return
	}
	codeValue, redirectURI, verifier := r.PostForm.Get("code"), r.PostForm.Get("redirect_uri"), r.PostForm.Get("code_verifier")
	if codeValue == "" || len(codeValue) > 128 {
		writeError(w, http.StatusBadRequest, "invalid_request", "code is required")
		return
	}
	code, err := s.store.redeemCode(r.Context(), codeValue, client.UID, func(c authorizationCode) error {
		if subtle.ConstantTimeCompare([]byte(c.RedirectURI), []byte(redirectURI)) != 1 {
			return errCodeInvalid
		}
		return checkPKCE(c.CodeChallenge, verifier)
	})
	switch {
	case errors.Is(err, errCodeReused):
		s.audit(r, auditEntry{Actor: "oauthclient:" + client.ClientID, Action: "oauth.code_reused", Target: "user/" + code.UserID,
			Details: map[string]any{"client_id": client.ClientID}})
		fallthrough
	case errors.Is(err, errCodeInvalid), errors.Is(err, errCodePKCE):
		writeError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return
	case err != nil:
		s.failed(w, r, err)
		return
	}
	cs, refusal, err := clientSessionFor(client, code.User, code.UserFound, code.Memberships, code.OrgID, code.MFA)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if refusal != "" {
		writeError(w, http.StatusBadRequest, "invalid_grant", refusal)
		return
	}
	cs.Scopes, cs.AuthTime, cs.Nonce = code.Scopes, code.AuthTime, code.Nonce
	var refresh string
	if slices.Contains(code.Scopes, scopeOfflineAccess) && client.allows(grantRefreshToken) {
		if refresh, cs.Family, err = s.store.startClientSession(r.Context(), cs, s.clientSessionPolicy(client), s.clientOf(r)); err == nil {
			err = s.store.codeStartedSession(r.Context(), codeValue, cs.Family)
		}
		if err != nil {
			s.failed(w, r, err)
			return
		}
	}
	resp, err := s.issueClientTokens(r, cs, refresh, grantAuthorizationCode)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// codeVerifierPattern is RFC 7636 section 4.1's code_verifier.
var codeVerifierPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// checkPKCE compares a code's S256 challenge with the verifier (RFC 7636 section 4.6). A code
// without a challenge (a confidential client that did not use PKCE) refuses a verifier, which
// would mean the request was not the one the client made.
func checkPKCE(challenge, verifier string) error {
	switch {
	case challenge == "" && verifier == "":
		return nil
	case challenge == "" || !codeVerifierPattern.MatchString(verifier):
		return errCodePKCE
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) != 1 {
		return errCodePKCE
	}
	return nil
}

// clientSessionOf checks, at the moment of issuing, that the user may still sign in to the
// client in organization orgID, reading the user and their memberships through q (a refresh's
// own transaction, so that a rotation needs one connection only). See clientSessionFor.
func clientSessionOf(ctx context.Context, q querier, client oauthClient, userID, orgID string, mfa bool) (clientSession, string, error) {
	u, all, found, err := userWithMemberships(ctx, q, userID)
	if err != nil {
		return clientSession{}, "", err
	}
	return clientSessionFor(client, u, found, all, orgID, mfa)
}

// clientSessionFor checks that user u (found) may sign in to the client in organization orgID:
// enabled, Active there, served by the client, and with a second factor if the organization
// requires one. A refusal is returned as its reason.
func clientSessionFor(client oauthClient, u user, found bool, all []membership, orgID string, mfa bool) (clientSession, string, error) {
	cs := clientSession{Client: client, MFA: mfa}
	if !found || u.Disabled {
		return cs, "the account no longer exists or is disabled", nil
	}
	cs.User = u
	if client.OrgID != nil && *client.OrgID != orgID {
		return cs, "this client does not serve the organization", nil
	}
	a, err := chooseAccess(all, orgID, "")
	if errors.Is(err, errNoAccess) {
		return cs, err.Error(), nil
	}
	if err != nil {
		return cs, "", err
	}
	if a.RequireMFA && !mfa {
		return cs, mfaRequired(a.OrgName).Message, nil
	}
	cs.Access = a
	return cs, "", nil
}

// clientSessionPolicy bounds the refresh tokens of client: authd's limits, or the client's
// shorter refreshTokenLifetime.
func (s *Server) clientSessionPolicy(client oauthClient) sessionPolicy {
	p := s.sessionPolicy()
	if client.RefreshTTL > 0 && client.RefreshTTL < p.Lifetime {
		p.Lifetime = client.RefreshTTL
		p.TTL = min(p.TTL, client.RefreshTTL)
	}
	return p
}

// clientRefresh is the refresh_token grant of an OAuth client's session.
func (s *Server) clientRefresh(w http.ResponseWriter, r *http.Request, client oauthClient) {
	if !client.allows(grantRefreshToken) {
		writeError(w, http.StatusBadRequest, "unauthorized_client", "this client may not use refresh tokens")
		return
	}
	presented := r.PostForm.Get("refresh_token")
	if presented == "" || len(presented) > 128 {
		writeError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return
	}
	var cs clientSession
	var refusal string
	rot, err := s.store.rotate(r.Context(), presented, s.clientSessionPolicy(client), s.clientOf(r), &client.UID,
		func(ctx context.Context, q querier, userID string, current tenantIDs, mfa bool) (tenantIDs, error) {
			if current.OrgID == nil {
				return tenantIDs{}, errInvalidRefresh
			}
			var err error
			if cs, refusal, err = clientSessionOf(ctx, q, client, userID, *current.OrgID, mfa); err != nil {
				return tenantIDs{}, err
			}
			if refusal != "" {
				return tenantIDs{}, errInvalidRefresh
			}
			return cs.Access.tenantIDs, nil
		})
	switch {
	case errors.Is(err, errRefreshReuse):
		s.metrics.reuseDetected.Inc()
		s.audit(r, auditEntry{Actor: "user:" + rot.UserID, ActorUserID: &rot.UserID, Action: "refresh.reuse_detected",
			Target: "session/" + rot.FamilyID, Details: map[string]any{"client_address": s.clientOf(r).Address, "client_id": client.ClientID}})
		writeError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return
	case errors.Is(err, errInvalidRefresh):
		if refusal != "" {
			err = errors.New(refusal)
		}
		writeError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return
	case err != nil:
		s.failed(w, r, err)
		return
	}
	cs.Scopes, cs.Family, cs.MFA = rot.Scopes, rot.FamilyID, rot.MFA
	if rot.AuthTime != nil {
		cs.AuthTime = *rot.AuthTime
	}
	if rot.Nonce != nil {
		cs.Nonce = *rot.Nonce
	}
	s.audit(r, auditEntry{Actor: cs.User.Email, ActorUserID: &cs.User.ID, Action: "session.refreshed", Target: "session/" + rot.FamilyID,
		OrgID: cs.Access.OrgID, Details: map[string]any{"client_id": client.ClientID}})
	resp, err := s.issueClientTokens(r, cs, rot.Token, grantRefreshToken)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}
