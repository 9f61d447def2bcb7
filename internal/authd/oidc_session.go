package authd

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tenancy-dev/tenancy/internal/authd/web"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// userinfo is OpenID Connect Core section 5.3: the claims about the person that the access
// token's scopes allow, checked live (a disabled or deleted account's token gets 401).
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	unauthorized := func(description string) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+description+`"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", description)
	}
	raw, ok := bearerToken(r)
	if !ok && r.Method == http.MethodPost {
		raw = r.PostFormValue("access_token") // RFC 6750 section 2.2
		ok = raw != ""
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tenancy"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "an access token is required")
		return
	}
	claims, err := s.verifier.Verify(r.Context(), raw)
	if err != nil || claims.IsAPIKey() {
		unauthorized("the access token is invalid or expired, or is not a person's")
		return
	}
	scopes := strings.Fields(claims.Scope)
	if claims.ClientID != tenancy.SessionClientID && !slices.Contains(scopes, scopeOpenID) {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="openid"`)
		writeError(w, http.StatusForbidden, "insufficient_scope", "the access token was not granted the openid scope")
		return
	}
	u, found, err := s.store.userByID(r.Context(), claims.Subject)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if !found || u.Disabled {
		unauthorized("the account no longer exists or is disabled")
		return
	}
	info := map[string]any{"sub": u.ID}
	if claims.Org != "" {
		info["org"], info["role"] = claims.Org, claims.Role
	}
	own := claims.ClientID == tenancy.SessionClientID // authd's own sessions see everything about themselves
	if own || slices.Contains(scopes, scopeEmail) {
		info["email"], info["email_verified"] = u.Email, u.EmailVerified
	}
	if own || slices.Contains(scopes, scopeProfile) {
		info["name"] = u.DisplayName
	}
	writeJSON(w, http.StatusOK, info)
}

// endSessionRequest is an RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
type endSessionRequest struct {
	Hint                  *idTokenClaims // the id_token_hint, verified but perhaps expired
	Client                *oauthClient
	PostLogoutRedirectURI string
	State                 string
}

// endSession answers GET and POST /oauth2/logout. With a valid id_token_hint of the browser's
// person the session ends at once; without one the person is asked first, so that another site
// cannot log them out. The browser returns to a registered post_logout_redirect_uri, if any.
func (s *Server) endSessionEndpoint(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.authorizePageError(w, r, "The logout request is malformed.")
		return
	}
	req, problemText := s.parseEndSession(r)
	if problemText != "" {
		s.render(w, http.StatusBadRequest, "error", view{Title: "Log out",
			Problem: &problem{Status: http.StatusBadRequest, Code: "invalid_request", Message: problemText}})
		return
	}
	ws, cookie, hasSession, err := s.browserSession(r)
	if err != nil {
		s.renderFailure(w, r, "error", view{Title: "Log out"}, err)
		return
	}
	confirmed := r.Method == http.MethodPost && hasSession && s.site.CheckSessionCSRF(r, cookie.Value)
	// A hint counts for the browser's session only if it was issued in that session (its person
	// and login time): an old ID token, which any application that ever had it could send, asks.
	hinted := req.Hint != nil && (!hasSession || (req.Hint.Subject == ws.User.ID && req.Hint.AuthTime == ws.AuthTime.Unix()))
	if hasSession && !hinted && !confirmed {
		hidden := [][2]string{}
		for _, name := range []string{"id_token_hint", "client_id", "post_logout_redirect_uri", "state"} {
			if v := r.Form.Get(name); v != "" {
				hidden = append(hidden, [2]string{name, v})
			}
		}
		if req.PostLogoutRedirectURI != "" {
			web.AllowFormTarget(w, req.PostLogoutRedirectURI)
		}
		s.render(w, http.StatusOK, "logout", view{Title: "Log out", User: &ws.User, CSRF: web.SessionCSRF(cookie.Value),
			Data: map[string]any{"Hidden": hidden, "Client": req.Client}})
		return
	}
	if hasSession {
		if err := s.endSession(r, cookie.Value, "logout"); err != nil {
			s.renderFailure(w, r, "error", view{Title: "Log out"}, err)
			return
		}
		s.site.ClearCookie(w, web.SessionCookie)
	}
	if req.Hint != nil && req.Hint.SessionID != "" && req.Client != nil {
		if err := s.store.endClientSession(r.Context(), req.Hint.SessionID, req.Hint.Subject, req.Client.UID); err != nil {
			s.renderFailure(w, r, "error", view{Title: "Log out"}, err)
			return
		}
	}
	// An organization's client's URI is followed only with an ID token of it: without one, anybody
	// could bounce browsers off authd to wherever an organization's Admin registered.
	if req.PostLogoutRedirectURI == "" || (req.Client.OrgID != nil && req.Hint == nil) {
		s.render(w, http.StatusOK, "error", view{Title: "You are logged out"})
		return
	}
	target, _ := url.Parse(req.PostLogoutRedirectURI)
	if req.State != "" {
		q := target.Query()
		q.Set("state", req.State)
		target.RawQuery = q.Encode()
	}
	http.Redirect(w, r, target.String(), http.StatusSeeOther)
}

// parseEndSession reads and checks a logout request; the text of a refusal is returned.
func (s *Server) parseEndSession(r *http.Request) (endSessionRequest, string) {
	req := endSessionRequest{PostLogoutRedirectURI: r.Form.Get("post_logout_redirect_uri"), State: r.Form.Get("state")}
	clientID := r.Form.Get("client_id")
	if hint := r.Form.Get("id_token_hint"); hint != "" {
		claims, err := s.parseIDTokenHint(r.Context(), hint)
		if err != nil {
			return req, "The id_token_hint is not an ID token this server issued."
		}
		req.Hint = claims
		if clientID == "" && len(claims.Audience) == 1 {
			clientID = claims.Audience[0]
		}
		if !slices.Contains(claims.Audience, clientID) {
			return req, "The id_token_hint was issued to another client than client_id."
		}
	}
	if clientID != "" {
		c, err := s.store.oauthClient(r.Context(), clientID)
		if err == nil {
			req.Client = &c
		} else if !errors.Is(err, errUnknownClient) {
			return req, "The service is temporarily unavailable; try again."
		}
	}
	if req.PostLogoutRedirectURI != "" && (req.Client == nil || !registeredURI(req.Client.PostLogoutRedirectURIs, req.PostLogoutRedirectURI)) {
		return req, "The post_logout_redirect_uri is not one the application registered (send client_id or id_token_hint to name the application)."
	}
	return req, ""
}

// parseIDTokenHint verifies an ID token of this issuer's keys; it may have expired, as ID tokens
// given back at logout often have.
func (s *Server) parseIDTokenHint(ctx context.Context, raw string) (*idTokenClaims, error) {
	claims := &idTokenClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if t.Header["typ"] != idTokenType {
			return nil, errors.New("not an ID token")
		}
		kid, _ := t.Header["kid"].(string)
		return publishedKeys{s.keys}.Key(ctx, kid)
	}, jwt.WithValidMethods([]string{signing.EdDSA, signing.ES256}), jwt.WithoutClaimsValidation())
	if err != nil {
		return nil, err
	}
	if claims.Issuer != s.tokens.issuer || claims.Subject == "" {
		return nil, errors.New("not an ID token of this issuer")
	}
	return claims, nil
}
