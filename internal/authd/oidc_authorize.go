package authd

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tenancy-dev/tenancy/internal/authd/web"
)

// The authorization endpoint (RFC 6749 section 4.1, OpenID Connect Core section 3.1): the code
// flow with PKCE, on the browser's session of the web pages.

// OpenID Connect scopes a client may list (spec.scopes of an OAuthClient).
const (
	scopeOpenID        = "openid"
	scopeProfile       = "profile"
	scopeEmail         = "email"
	scopeOfflineAccess = "offline_access"
)

// authorizeRequest is an authorization request's parameters.
type authorizeRequest struct {
	ClientID            string
	RedirectURI         string
	ResponseType        string
	ResponseMode        string
	Scopes              []string
	State               string
	Nonce               string
	CodeChallenge       string
	CodeChallengeMethod string
	Prompt              []string
	MaxAge              *int
	LoginHint           string
	Organization        string
	values              url.Values
}

func (a authorizeRequest) prompts(p string) bool { return slices.Contains(a.Prompt, p) }

// authorizeParams are the parameters a request may carry, in the order the pages repeat them.
var authorizeParams = []string{"client_id", "redirect_uri", "response_type", "response_mode", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "prompt", "max_age", "login_hint", "organization"}

// codeChallengePattern is an S256 challenge: base64url of a SHA-256, 43 characters (RFC 7636).
var codeChallengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// authorizeError is an error answered to the client at its redirect URI (RFC 6749 section
// 4.1.2.1).
type authorizeError struct{ Code, Description string }

func (e *authorizeError) Error() string { return e.Code + ": " + e.Description }

func authzError(code, description string) *authorizeError {
	return &authorizeError{Code: code, Description: description}
}

// authorize answers GET and POST /oauth2/authorize. A POST with the session's CSRF token is also
// the person's answer to the organization chooser or the consent page.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.authorizePageError(w, r, "The authorization request is malformed.")
		return
	}
	req := parseAuthorizeRequest(r.Form)
	// Until the client and its redirect URI are known, nothing may be sent to the URI: the
	// person sees the error (RFC 6749 section 4.1.2.1).
	client, err := s.store.oauthClient(r.Context(), req.ClientID)
	if errors.Is(err, errUnknownClient) {
		s.authorizePageError(w, r, "The application's client_id is not registered here.")
		return
	}
	if err != nil {
		s.renderFailure(w, r, "error", view{Title: "Sign in"}, err)
		return
	}
	if req.RedirectURI == "" || !client.allowsRedirect(req.RedirectURI) {
		s.authorizePageError(w, r, "The redirect_uri is missing or is not one of the application's registered redirect URIs.")
		return
	}
	if err := s.authorizeFlow(w, r, client, req); err != nil {
		var refusal *authorizeError
		if !errors.As(err, &refusal) {
			s.renderFailure(w, r, "error", view{Title: "Sign in"}, err)
			return
		}
		trusted, err := s.trustedRedirect(r, client)
		switch {
		case err != nil:
			s.renderFailure(w, r, "error", view{Title: "Sign in"}, err)
		case !trusted:
			s.authorizePageError(w, r, "The application's request was refused ("+refusal.Code+"): "+refusal.Description+".")
		default:
			s.redirectToClient(w, r, req, url.Values{"error": {refusal.Code}, "error_description": {refusal.Description}})
		}
	}
}

// trustedRedirect reports whether an error may be sent to the client's redirect URI: a
// platform-wide client's URIs were registered by a platform admin; an organization's client's,
// by any of its Admins, so they are trusted only by a browser whose person is a member there —
// else authd would redirect anyone, unauthenticated, wherever an organization registered
// (RFC 9700 section 4.11.2).
func (s *Server) trustedRedirect(r *http.Request, client oauthClient) (bool, error) {
	if client.OrgID == nil {
		return true, nil
	}
	ws, _, ok, err := s.browserSession(r)
	if err != nil || !ok {
		return false, err
	}
	all, err := s.store.memberships(r.Context(), ws.User.ID)
	return len(clientOrganizations(all, client)) > 0, err
}

// authorizeFlow runs the request of a known client and redirect URI to its end: a code at the
// redirect URI, the login page, the chooser or consent page, or an authorizeError.
func (s *Server) authorizeFlow(w http.ResponseWriter, r *http.Request, client oauthClient, req authorizeRequest) error {
	if err := validateAuthorizeRequest(client, req); err != nil {
		return err
	}
	ws, cookie, hasSession, err := s.browserSession(r)
	if err != nil {
		return err
	}
	tooOld := hasSession && req.MaxAge != nil && time.Since(ws.AuthTime) > time.Duration(*req.MaxAge)*time.Second
	if !hasSession || tooOld || req.prompts("login") {
		if req.prompts("none") {
			return authzError("login_required", "the person is not logged in (or not recently enough)")
		}
		s.sendToLogin(w, r, req)
		return nil
	}
	// A decision on the chooser or consent page counts only with the session's CSRF token.
	decided := r.Method == http.MethodPost && s.site.CheckSessionCSRF(r, cookie.Value)

	all, err := s.store.memberships(r.Context(), ws.User.ID)
	if err != nil {
		return err
	}
	orgs := clientOrganizations(all, client)
	if len(orgs) == 0 {
		return authzError("access_denied", "you have no active membership in an organization this application serves")
	}
	// The organization is chosen by name and used by id from here on: a name that looks like
	// another organization's id must not select that one.
	org, orgID := req.Organization, ""
	if decided && r.PostForm.Get("chosen_organization") != "" {
		org = r.PostForm.Get("chosen_organization")
	}
	switch i := slices.IndexFunc(orgs, func(m membership) bool { return m.OrgName == org }); {
	case org != "" && i < 0:
		return authzError("access_denied", "you have no active membership in organization "+org+" for this application")
	case org != "":
		orgID = orgs[i].OrgID
	case len(orgs) == 1 && !req.prompts("select_account"):
		org, orgID = orgs[0].OrgName, orgs[0].OrgID
	}
	// Consent is per organization: the client acts with the person's role in the one chosen.
	var consented bool
	if !client.FirstParty && !req.prompts("consent") && orgID != "" {
		if consented, err = s.store.hasConsent(r.Context(), ws.User.ID, client.UID, orgID, req.Scopes); err != nil {
			return err
		}
	}
	needsConsent := !client.FirstParty && !consented
	if decided {
		switch r.PostForm.Get("consent") {
		case "deny":
			s.audit(r, auditEntry{Actor: ws.User.Email, ActorUserID: &ws.User.ID, Action: "oauth.consent_denied", Target: "oauthclient/" + client.ClientID})
			return authzError("access_denied", "the person denied the application access")
		case "allow":
			if needsConsent && orgID != "" {
				if err := s.store.grantConsent(r.Context(), ws.User.ID, client.UID, orgID, req.Scopes); err != nil {
					return err
				}
				s.audit(r, auditEntry{Actor: ws.User.Email, ActorUserID: &ws.User.ID, Action: "oauth.consent_granted",
					Target: "oauthclient/" + client.ClientID, OrgID: &orgID, Details: map[string]any{"scopes": req.Scopes}})
				needsConsent = false
			}
		}
	}
	if orgID == "" || needsConsent {
		if req.prompts("none") {
			if orgID == "" {
				return authzError("account_selection_required", "choose an organization: send organization=<name> or sign in interactively")
			}
			return authzError("consent_required", "the person has not allowed this application yet")
		}
		s.renderAuthorizePage(w, client, req, ws, web.SessionCSRF(cookie.Value), all, orgs, org, needsConsent)
		return nil
	}
	a, err := chooseAccess(all, orgID, "")
	if errors.Is(err, errNoAccess) {
		return authzError("access_denied", err.Error())
	}
	if err != nil {
		return err
	}
	if a.RequireMFA && !ws.MFA {
		return authzError("access_denied", mfaRequired(a.OrgName).Message)
	}
	code, err := s.store.newAuthorizationCode(r.Context(), authorizationCode{
		ClientUID: client.UID, UserID: ws.User.ID, OrgID: *a.OrgID, RedirectURI: req.RedirectURI, CodeChallenge: req.CodeChallenge,
		Scopes: req.Scopes, Nonce: req.Nonce, AuthTime: ws.AuthTime, MFA: ws.MFA,
	})
	if err != nil {
		return err
	}
	s.audit(r, auditEntry{Actor: ws.User.Email, ActorUserID: &ws.User.ID, Action: "oauth.authorized", Target: "oauthclient/" + client.ClientID,
		OrgID: a.OrgID, Details: map[string]any{"scopes": req.Scopes}})
	s.redirectToClient(w, r, req, url.Values{"code": {code}})
	return nil
}

// browserSession is the live session of the browser's cookie, if it has one; err is a failure to
// find out, not the absence of a session.
func (s *Server) browserSession(r *http.Request) (ws webSession, cookie *http.Cookie, ok bool, err error) {
	cookie, err = s.site.Cookie(r, web.SessionCookie)
	if err != nil {
		return ws, nil, false, nil
	}
	ws, err = s.store.webSession(r.Context(), cookie.Value, s.sessionPolicy())
	if errors.Is(err, errNoWebSession) {
		return ws, cookie, false, nil
	}
	return ws, cookie, err == nil, err
}

func parseAuthorizeRequest(v url.Values) authorizeRequest {
	req := authorizeRequest{
		ClientID: v.Get("client_id"), RedirectURI: v.Get("redirect_uri"), ResponseType: v.Get("response_type"),
		ResponseMode: v.Get("response_mode"), Scopes: strings.Fields(v.Get("scope")), State: v.Get("state"), Nonce: v.Get("nonce"),
		CodeChallenge: v.Get("code_challenge"), CodeChallengeMethod: v.Get("code_challenge_method"),
		Prompt: strings.Fields(v.Get("prompt")), LoginHint: v.Get("login_hint"), Organization: v.Get("organization"), values: v,
	}
	if v.Has("max_age") {
		n, err := strconv.Atoi(v.Get("max_age"))
		if err != nil || n < 0 {
			n = -1
		}
		req.MaxAge = &n
	}
	return req
}

// validateAuthorizeRequest checks what does not depend on the person.
func validateAuthorizeRequest(client oauthClient, req authorizeRequest) error {
	switch {
	case req.values.Has("request"):
		return authzError("request_not_supported", "request objects are not supported")
	case req.values.Has("request_uri"):
		return authzError("request_uri_not_supported", "request_uri is not supported")
	case req.ResponseType != "code":
		return authzError("unsupported_response_type", "response_type must be code")
	case req.ResponseMode != "" && req.ResponseMode != "query":
		return authzError("invalid_request", "response_mode must be query")
	case !client.allows(grantAuthorizationCode):
		return authzError("unauthorized_client", "this client may not use the authorization code flow")
	case len(req.Scopes) == 0:
		return authzError("invalid_scope", "scope is required; use at least openid")
	case req.MaxAge != nil && *req.MaxAge < 0:
		return authzError("invalid_request", "max_age must be a number of seconds, 0 or more")
	case len(req.State) > 1024 || len(req.Nonce) > 512 || len(req.LoginHint) > 320:
		return authzError("invalid_request", "state, nonce or login_hint is too long")
	}
	for _, sc := range req.Scopes {
		if !slices.Contains(client.Scopes, sc) {
			return authzError("invalid_scope", "scope "+sc+" is not one this client may ask for")
		}
	}
	for _, p := range req.Prompt {
		if !slices.Contains([]string{"none", "login", "consent", "select_account"}, p) {
			return authzError("invalid_request", "prompt "+p+" is not supported")
		}
	}
	if req.prompts("none") && len(req.Prompt) > 1 {
		return authzError("invalid_request", "prompt=none cannot be combined with other values")
	}
	switch {
	case req.CodeChallenge == "" && client.Public:
		return authzError("invalid_request", "code_challenge is required: public clients must use PKCE with S256")
	case req.CodeChallenge != "" && req.CodeChallengeMethod != "S256":
		return authzError("invalid_request", "code_challenge_method must be S256")
	case req.CodeChallenge != "" && !codeChallengePattern.MatchString(req.CodeChallenge):
		return authzError("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier (43 characters)")
	case req.CodeChallenge == "" && req.CodeChallengeMethod != "":
		return authzError("invalid_request", "code_challenge_method without code_challenge")
	}
	return nil
}

// clientOrganizations are the organizations (one membership each) where the person has an Active
// membership that the client serves.
func clientOrganizations(all []membership, client oauthClient) []membership {
	var orgs []membership
	for _, m := range all {
		if m.State != "Active" || (client.OrgID != nil && *client.OrgID != m.OrgID) {
			continue
		}
		if !slices.ContainsFunc(orgs, func(o membership) bool { return o.OrgID == m.OrgID }) {
			orgs = append(orgs, m)
		}
	}
	return orgs
}

// sendToLogin sends the browser to the login page, which comes back to this request once the
// person logged in. The request comes back without prompt=login and max_age, which the new
// login just met (else they would ask for another one forever).
func (s *Server) sendToLogin(w http.ResponseWriter, r *http.Request, req authorizeRequest) {
	back := url.Values{}
	for _, name := range authorizeParams {
		if v := req.values.Get(name); v != "" && name != "max_age" && name != "prompt" {
			back.Set(name, v)
		}
	}
	if rest := slices.DeleteFunc(slices.Clone(req.Prompt), func(p string) bool { return p == "login" }); len(rest) > 0 {
		back.Set("prompt", strings.Join(rest, " "))
	}
	login := url.Values{"next": {"/oauth2/authorize?" + back.Encode()}}
	if req.LoginHint != "" {
		login.Set("login_hint", req.LoginHint)
	}
	http.Redirect(w, r, "/login?"+login.Encode(), http.StatusSeeOther)
}

// redirectToClient sends the browser to the request's redirect URI with params, state and iss
// (RFC 9207) added to its query.
func (s *Server) redirectToClient(w http.ResponseWriter, r *http.Request, req authorizeRequest, params url.Values) {
	target, _ := url.Parse(req.RedirectURI) // allowsRedirect parsed it
	q := target.Query()
	for k, v := range params {
		q[k] = v
	}
	if req.State != "" {
		q.Set("state", req.State)
	}
	q.Set("iss", s.issuer())
	target.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target.String(), http.StatusSeeOther)
}

// authorizePageError shows an error that must not go to the redirect URI.
func (s *Server) authorizePageError(w http.ResponseWriter, _ *http.Request, message string) {
	s.render(w, http.StatusBadRequest, "error", view{Title: "Sign in",
		Problem: &problem{Status: http.StatusBadRequest, Code: "invalid_request", Message: message}})
}

// authorizePage is the chooser and consent page's content.
type authorizePage struct {
	Client        oauthClient
	Hidden        [][2]string // the request's parameters, repeated by the form
	Organizations []membership
	Chosen        string
	Consent       bool
	Scopes        []string
	Role          map[string]string // role by organization name
}

// renderAuthorizePage asks the person to choose an organization, to allow the client, or both.
func (s *Server) renderAuthorizePage(w http.ResponseWriter, client oauthClient, req authorizeRequest,
	ws webSession, csrf string, all, orgs []membership, chosen string, consent bool) {
	page := authorizePage{Client: client, Organizations: orgs, Chosen: chosen, Consent: consent, Scopes: req.Scopes, Role: map[string]string{}}
	for _, name := range authorizeParams {
		if v := req.values.Get(name); v != "" {
			page.Hidden = append(page.Hidden, [2]string{name, v})
		}
	}
	for _, o := range orgs {
		if a, err := chooseAccess(all, o.OrgName, ""); err == nil {
			page.Role[o.OrgName] = a.Role
		}
	}
	title := "Choose an organization"
	if consent {
		title = "Allow " + client.DisplayName + "?"
	}
	web.AllowFormTarget(w, req.RedirectURI)
	s.render(w, http.StatusOK, "authorize", view{Title: title, User: &ws.User, CSRF: csrf, Data: page})
}

// issuer is the issuer URL without a trailing slash.
func (s *Server) issuer() string { return strings.TrimSuffix(s.cfg.Issuer, "/") }
