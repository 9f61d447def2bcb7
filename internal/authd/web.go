package authd

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// The web pages: server-rendered, no third-party assets, one small script (copy buttons and
// selectors that submit on change; every page works without it).

//go:embed web
var webFiles embed.FS

const (
	sessionCookie = "tenancy_session"
	// loginCSRFCookie carries the double-submitted token of the forms shown before a session
	// exists (login, invitation); forms inside a session use a token derived from the session.
	loginCSRFCookie = "tenancy_csrf"
	flashCookie     = "tenancy_flash"
	csrfField       = "csrf_token"
)

// contentSecurityPolicy allows the page's own styles, script and forms, and nothing else.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// webPages are the parsed templates, by page.
type webPages map[string]*template.Template

func parsePages() (webPages, error) {
	funcs := template.FuncMap{
		"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") },
		"whenPtr": func(t *time.Time) string {
			if t == nil {
				return "never"
			}
			return t.UTC().Format("2006-01-02 15:04 MST")
		},
		"roles": func() []string { return []string{"Owner", "Admin", "Member", "Viewer"} },
		"button": func(action, csrf, label, class string) postButton {
			return postButton{Action: action, CSRF: csrf, Label: label, Class: class}
		},
	}
	names, err := fs.Glob(webFiles, "web/templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := webPages{}
	for _, name := range names {
		page := strings.TrimSuffix(strings.TrimPrefix(name, "web/templates/"), ".html")
		if page == "layout" {
			continue
		}
		t, err := template.New(page).Funcs(funcs).ParseFS(webFiles, "web/templates/layout.html", name)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", name, err)
		}
		pages[page] = t
	}
	return pages, nil
}

// postButton is a form of one button that posts to Action, for the "button" template.
type postButton struct{ Action, CSRF, Label, Class string }

// view is what every page template gets.
type view struct {
	Title   string
	User    *user
	CSRF    string
	Flash   string
	Problem *problem
	Orgs    []string // the organizations of the selector
	Org     string   // the organization shown
	Tab     string
	Manage  bool // the user administers Org
	Data    any
}

func (s *Server) routeWeb(mux *http.ServeMux, route func(pattern string, h http.HandlerFunc)) {
	static, _ := fs.Sub(webFiles, "web/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticFiles(http.FileServerFS(static))))
	route("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/account", http.StatusSeeOther) })
	route("GET /login", s.loginPage)
	route("POST /login", s.loginSubmit)
	route("GET /invite", s.invitePage)
	route("POST /invite", s.inviteSubmit)
	route("POST /logout", s.inSession(s.logoutSubmit))
	route("GET /account", s.inSession(s.accountPage))
	route("POST /account/password", s.inSession(s.passwordSubmit))
	route("POST /account/sessions/{id}/end", s.inSession(s.sessionEndSubmit))
	route("POST /account/sessions/end-others", s.inSession(s.sessionEndSubmit))
	route("GET /orgs/select", s.inSession(func(w http.ResponseWriter, r *http.Request, _ webSession) {
		http.Redirect(w, r, "/orgs/"+url.PathEscape(r.URL.Query().Get("org"))+"/members", http.StatusSeeOther)
	}))
	route("GET /orgs/{org}", s.inSession(func(w http.ResponseWriter, r *http.Request, _ webSession) {
		http.Redirect(w, r, "/orgs/"+url.PathEscape(r.PathValue("org"))+"/members", http.StatusSeeOther)
	}))
	route("GET /orgs/{org}/members", s.orgPage("members"))
	route("GET /orgs/{org}/projects", s.orgPage("projects"))
	route("GET /orgs/{org}/apikeys", s.orgPage("apikeys"))
	route("GET /orgs/{org}/audit", s.orgPage("audit"))
	route("POST /orgs/{org}/projects", s.orgAction("projects", s.createProjectSubmit))
	route("POST /orgs/{org}/projects/{name}/delete", s.orgAction("projects", s.deleteProjectSubmit))
	route("POST /orgs/{org}/members", s.orgAction("members", s.inviteMemberSubmit))
	route("POST /orgs/{org}/members/{name}/role", s.orgAction("members", s.memberRoleSubmit))
	route("POST /orgs/{org}/members/{name}/delete", s.orgAction("members", s.removeMemberSubmit))
	route("POST /orgs/{org}/apikeys", s.orgAction("apikeys", s.createKeySubmit))
	route("POST /orgs/{org}/apikeys/{name}/rotate", s.orgAction("apikeys", s.rotateKeySubmit))
	route("POST /orgs/{org}/apikeys/{name}/delete", s.orgAction("apikeys", s.deleteKeySubmit))
}

// staticFiles may be cached for an hour: they change only with authd's version.
func staticFiles(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// render writes a page with the headers every HTML answer carries.
func (s *Server) render(w http.ResponseWriter, status int, page string, v view) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // invitation links carry their token: never to other sites
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := s.pages[page].ExecuteTemplate(w, "layout", v); err != nil {
		s.log.Error(err, "Rendering a page", "page", page)
	}
}

// renderFailure shows err on page: a refusal with its fields, or, for anything unexpected, a
// sentence without details (they go to the log).
func (s *Server) renderFailure(w http.ResponseWriter, r *http.Request, page string, v view, err error) {
	var p *problem
	switch {
	case errors.As(err, &p):
	case errors.Is(err, errKeyPending):
		p = &problem{Status: http.StatusAccepted, Message: err.Error() + "; it appears in the list once it is Ready"}
	default:
		p = &problem{Status: http.StatusInternalServerError, Message: "Something failed on our side; try again."}
		if unavailable(err) {
			p = &problem{Status: http.StatusServiceUnavailable, Message: "The service is temporarily unavailable; try again in a few seconds."}
			w.Header().Set("Retry-After", "5")
		} else {
			s.log.Error(err, "Page failed", "path", r.URL.Path)
		}
	}
	v.Problem = p
	s.render(w, p.Status, page, v)
}

// webSite is what the pages derive from the public URL, once.
type webSite struct {
	// origin is the Origin header of the site's own forms.
	origin string
	// secure cookies everywhere but on http://localhost and 127.0.0.1, so that development
	// works without TLS.
	secure bool
}

func newWebSite(publicURL string) webSite {
	u, err := url.Parse(publicURL)
	if err != nil {
		return webSite{secure: true}
	}
	site := webSite{secure: u.Scheme == "https" || !slices.Contains([]string{"localhost", "127.0.0.1", "::1"}, u.Hostname())}
	if u.Host != "" {
		site.origin = u.Scheme + "://" + u.Host
	}
	return site
}

// cookieName is name with the __Host- prefix when cookies are Secure: the browser then takes
// the cookie only from this host, over TLS, for every path, so a sibling subdomain cannot plant one.
func (s *Server) cookieName(name string) string {
	if s.site.secure {
		return "__Host-" + name
	}
	return name
}

// setCookie sets a cookie of the site; a negative maxAge removes it.
func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(name), Value: value, Path: "/", MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, Secure: s.site.secure, SameSite: http.SameSiteLaxMode})
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	s.setCookie(w, name, "", -time.Second)
}

// flash shows a message on the next page, after a redirect.
func (s *Server) flash(w http.ResponseWriter, message string) {
	s.setCookie(w, flashCookie, base64.RawURLEncoding.EncodeToString([]byte(message)), time.Minute)
}

func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(s.cookieName(flashCookie))
	if err != nil {
		return ""
	}
	s.clearCookie(w, flashCookie)
	message, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return ""
	}
	return string(message)
}

// sessionCSRF is the CSRF token of a session: derived from the session's cookie, which a forged
// request cannot read.
func sessionCSRF(cookie string) string {
	sum := sha256.Sum256([]byte("tenancy-csrf/" + cookie))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// sameOrigin refuses a form posted from another origin, when the browser says where from.
func (s *Server) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return origin == "" // "null": a sandboxed or privacy-redirected form, never ours
	}
	return s.site.origin != "" && strings.EqualFold(origin, s.site.origin)
}

func csrfMatches(form, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(form), []byte(want)) == 1
}

var errCSRF = &problem{Status: http.StatusForbidden, Code: "csrf",
	Message: "The form expired or did not come from this site. Reload the page and try again."}

// loginCSRF returns the double-submit token of the pre-session forms, setting its cookie when
// the browser has none.
func (s *Server) loginCSRF(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(s.cookieName(loginCSRFCookie)); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	s.setCookie(w, loginCSRFCookie, token, 12*time.Hour)
	return token
}

// checkLoginCSRF verifies a pre-session form.
func (s *Server) checkLoginCSRF(r *http.Request) bool {
	c, err := r.Cookie(s.cookieName(loginCSRFCookie))
	return err == nil && s.sameOrigin(r) && csrfMatches(r.PostFormValue(csrfField), c.Value)
}

// inSession runs h for a browser with a live session, checking the CSRF token of every POST;
// other browsers go to the login page.
func (s *Server) inSession(h func(w http.ResponseWriter, r *http.Request, ws webSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(s.cookieName(sessionCookie))
		var ws webSession
		if err == nil {
			ws, err = s.store.webSession(r.Context(), c.Value, s.sessionPolicy())
		}
		if err != nil {
			if !errors.Is(err, errNoWebSession) && !errors.Is(err, http.ErrNoCookie) {
				s.renderFailure(w, r, "error", view{Title: "Unavailable"}, err)
				return
			}
			s.clearCookie(w, sessionCookie)
			if r.Method != http.MethodGet {
				s.render(w, http.StatusUnauthorized, "error", view{Title: "Signed out",
					Problem: &problem{Status: http.StatusUnauthorized, Message: "Your session ended. Log in again."}})
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && (!s.sameOrigin(r) || !csrfMatches(r.PostFormValue(csrfField), sessionCSRF(c.Value))) {
			s.render(w, http.StatusForbidden, "error", view{Title: "Refused", User: &ws.User, Problem: errCSRF})
			return
		}
		ctx := context.WithValue(r.Context(), csrfKey{}, sessionCSRF(c.Value))
		h(w, r.WithContext(ctx), ws)
	}
}

type csrfKey struct{}

// baseView fills what every page of a session shows: the user, the CSRF token, a flash message
// and the organizations of the selector.
func (s *Server) baseView(w http.ResponseWriter, r *http.Request, ws webSession, title string) (view, []membership, error) {
	v := view{Title: title, User: &ws.User, Flash: s.takeFlash(w, r)}
	v.CSRF, _ = r.Context().Value(csrfKey{}).(string)
	all, err := s.store.memberships(r.Context(), ws.User.ID)
	for _, m := range all {
		if m.State == string(tenancyv1.MembershipActive) && (len(v.Orgs) == 0 || v.Orgs[len(v.Orgs)-1] != m.OrgName) {
			v.Orgs = append(v.Orgs, m.OrgName)
		}
	}
	return v, all, err
}

// safeNext keeps a post-login redirect on this site: a path, nothing a browser could read as
// another host (browsers drop tabs and newlines and read \\ as /, so /\t/evil.example is
// //evil.example to them).
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(next, "/") ||
		strings.HasPrefix(next, "//") || strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "/account"
	}
	return next
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login", view{Title: "Log in", CSRF: s.loginCSRF(w, r),
		Data: map[string]string{"Next": safeNext(r.URL.Query().Get("next")), "Email": ""}})
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	email := r.PostFormValue("email")
	data := map[string]string{"Next": safeNext(r.PostFormValue("next")), "Email": email}
	v := view{Title: "Log in", CSRF: s.loginCSRF(w, r), Data: data}
	if !s.checkLoginCSRF(r) {
		v.Problem = errCSRF
		s.render(w, http.StatusForbidden, "login", v)
		return
	}
	u, err := s.passwordLogin(w, r, email, r.PostFormValue("password"))
	if err != nil {
		s.renderFailure(w, r, "login", v, err)
		return
	}
	if err := s.startWebSession(w, r, u); err != nil {
		s.renderFailure(w, r, "login", v, err)
		return
	}
	http.Redirect(w, r, data["Next"], http.StatusSeeOther)
}

// passwordLogin checks a login form as POST /auth/login does.
func (s *Server) passwordLogin(w http.ResponseWriter, r *http.Request, email, password string) (user, error) {
	u, err := s.checkPassword(w, r, email, password)
	if err != nil {
		return user{}, err
	}
	s.metrics.logins.WithLabelValues("ok").Inc()
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "login.succeeded", Target: "user/" + u.Email, Details: map[string]any{"via": "web"}})
	return u, nil
}

// startWebSession starts a session for u and gives the browser its cookie, ending the session
// the browser had (nobody could see or end it otherwise). The session is not tied to one
// organization: pages act in the one they show.
func (s *Server) startWebSession(w http.ResponseWriter, r *http.Request, u user) error {
	if previous, err := r.Cookie(s.cookieName(sessionCookie)); err == nil {
		if err := s.endSession(r, previous.Value, "logout"); err != nil {
			return err
		}
	}
	token, _, err := s.store.startSession(r.Context(), u.ID, scope{}, webSessionKind, s.sessionPolicy(), s.clientOf(r))
	if err != nil {
		return err
	}
	s.setCookie(w, sessionCookie, token, s.cfg.SessionLifetime)
	s.clearCookie(w, loginCSRFCookie)
	return nil
}

func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request, _ webSession) {
	c, _ := r.Cookie(s.cookieName(sessionCookie))
	if err := s.endSession(r, c.Value, "logout"); err != nil {
		s.renderFailure(w, r, "error", view{Title: "Log out"}, err)
		return
	}
	s.clearCookie(w, sessionCookie)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) invitePage(w http.ResponseWriter, r *http.Request) {
	if v, ok := s.invitationView(w, r, r.URL.Query().Get("token")); ok {
		s.render(w, http.StatusOK, "invite", v)
	}
}

// invitationView previews the invitation of token for its page; when there is none it answers
// the error page itself and returns false.
func (s *Server) invitationView(w http.ResponseWriter, r *http.Request, token string) (view, bool) {
	v := view{Title: "Invitation", CSRF: s.loginCSRF(w, r)}
	preview, err := s.store.previewInvitation(r.Context(), token)
	switch {
	case errors.Is(err, errInvalidInvitation) || len(token) > 128:
		s.render(w, http.StatusNotFound, "error", view{Title: "Invitation", Problem: errUnknownInvitation})
		return v, false
	case err != nil:
		s.renderFailure(w, r, "error", v, err)
		return v, false
	}
	v.Data = inviteData{Token: token, Invitation: preview}
	return v, true
}

// inviteData is the invitation page's content.
type inviteData struct {
	Token      string
	Invitation invitationPreview
}

var errUnknownInvitation = &problem{Status: http.StatusNotFound, Code: "invalid_invitation",
	Message: "This invitation link is unknown, already used or expired. Ask whoever invited you for a new one."}

func (s *Server) inviteSubmit(w http.ResponseWriter, r *http.Request) {
	token := r.PostFormValue("token")
	v, ok := s.invitationView(w, r, token)
	if !ok {
		return
	}
	if !s.checkLoginCSRF(r) {
		v.Problem = errCSRF
		s.render(w, http.StatusForbidden, "invite", v)
		return
	}
	password := r.PostFormValue("password")
	if !v.Data.(inviteData).Invitation.HasPassword && password != r.PostFormValue("confirm") {
		v.Problem = &problem{Status: http.StatusBadRequest, Message: "The two passwords differ."}
		s.render(w, http.StatusBadRequest, "invite", v)
		return
	}
	if err := s.throttleAddress(w, r); err != nil {
		s.renderFailure(w, r, "invite", v, err)
		return
	}
	inv, err := s.redeemInvitation(w, r, token, password, nil)
	var proof *errProof
	if errors.As(err, &proof) {
		err = &problem{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: proof.message}
	}
	if err != nil {
		s.renderFailure(w, r, "invite", v, err)
		return
	}
	if err := s.startWebSession(w, r, user{ID: inv.UserID, Email: inv.Email}); err != nil {
		s.renderFailure(w, r, "invite", v, err)
		return
	}
	s.flash(w, "Welcome to "+inv.OrgName+".")
	http.Redirect(w, r, "/orgs/"+url.PathEscape(inv.OrgName)+"/members", http.StatusSeeOther)
}

// accountData is the account page's content.
type accountData struct {
	Memberships []membership
	Sessions    []session
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request, ws webSession) {
	s.renderAccount(w, r, ws, http.StatusOK, nil)
}

func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, ws webSession, status int, failure error) {
	v, all, err := s.baseView(w, r, ws, "Your account")
	var sessions []session
	if err == nil {
		sessions, err = s.store.sessions(r.Context(), ws.User.ID, ws.FamilyID)
	}
	v.Data = accountData{Memberships: all, Sessions: sessions}
	if err == nil {
		err = failure
	}
	if err != nil {
		s.renderFailure(w, r, "account", v, err)
		return
	}
	s.render(w, status, "account", v)
}

func (s *Server) passwordSubmit(w http.ResponseWriter, r *http.Request, ws webSession) {
	req := passwordRequest{CurrentPassword: r.PostFormValue("current"), NewPassword: r.PostFormValue("new")}
	if req.NewPassword != r.PostFormValue("confirm") {
		s.renderAccount(w, r, ws, http.StatusBadRequest, badRequest("confirm", "the two new passwords differ"))
		return
	}
	if err := s.changePassword(w, r, ws.User, req, ws.FamilyID); err != nil {
		s.renderAccount(w, r, ws, http.StatusBadRequest, err)
		return
	}
	s.flash(w, "Your password is changed; your other sessions are ended.")
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

func (s *Server) sessionEndSubmit(w http.ResponseWriter, r *http.Request, ws webSession) {
	family, keep := r.PathValue("id"), ""
	if family == "" {
		keep = ws.FamilyID
	}
	ended, err := s.endSessionsOf(r, ws.User, family, keep)
	if err != nil {
		s.renderAccount(w, r, ws, http.StatusInternalServerError, err)
		return
	}
	s.flash(w, fmt.Sprintf("%d session(s) ended.", ended))
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

// orgData is an organization page's content.
type orgData struct {
	Project  string // the project selector's choice; "" shows everything
	Projects []projectView
	Members  []memberView
	Keys     []apiKeyView
	Audit    []auditRecord
	Next     string // the audit log's next page
	Issued   *apiKeyView
	Invited  *memberView
}

// orgPage renders one tab of an organization.
func (s *Server) orgPage(tab string) http.HandlerFunc {
	return s.inSession(func(w http.ResponseWriter, r *http.Request, ws webSession) {
		s.renderOrg(w, r, ws, tab, http.StatusOK, orgData{}, nil)
	})
}

func (s *Server) renderOrg(w http.ResponseWriter, r *http.Request, ws webSession, tab string, status int, data orgData, failure error) {
	v, all, err := s.baseView(w, r, ws, r.PathValue("org"))
	v.Org, v.Tab = r.PathValue("org"), tab
	var c orgCaller
	if err == nil {
		c, err = s.callerFrom(ws.User, all, v.Org)
	}
	if err == nil {
		v.Manage = c.canManage()
		data.Project = r.URL.Query().Get("project")
		data.Projects, err = s.listProjects(r.Context(), c)
	}
	if err == nil {
		switch tab {
		case "members":
			data.Members, err = s.listMembers(r.Context(), c)
			data.Members = filterByProject(data.Members, data.Project, func(m memberView) string { return m.Project })
		case "apikeys":
			data.Keys, err = s.listAPIKeys(r.Context(), c)
			data.Keys = filterByProject(data.Keys, data.Project, func(k apiKeyView) string { return k.Project })
		case "audit":
			data.Audit, data.Next, err = s.auditFromRequest(r, c)
		}
	}
	v.Data = data
	if err == nil {
		err = failure
	}
	if err != nil {
		s.renderFailure(w, r, tab, v, err)
		return
	}
	s.render(w, status, tab, v)
}

func filterByProject[T any](items []T, project string, of func(T) string) []T {
	if project == "" {
		return items
	}
	var kept []T
	for _, item := range items {
		if of(item) == project {
			kept = append(kept, item)
		}
	}
	return kept
}

// orgAction runs a form of an organization's tab: on success act redirects or renders itself;
// on failure the tab is shown again with the refusal.
func (s *Server) orgAction(tab string, act func(r *http.Request, c orgCaller) (orgData, string, error)) http.HandlerFunc {
	return s.inSession(func(w http.ResponseWriter, r *http.Request, ws webSession) {
		c, err := s.callerIn(r.Context(), ws.User, r.PathValue("org"))
		var data orgData
		var done string
		if err == nil {
			data, done, err = act(r, c)
		}
		if err != nil || data.Issued != nil || data.Invited != nil {
			status := http.StatusOK
			var p *problem
			if errors.As(err, &p) {
				status = p.Status
			}
			s.renderOrg(w, r, ws, tab, status, data, err)
			return
		}
		s.flash(w, done)
		http.Redirect(w, r, "/orgs/"+url.PathEscape(c.org.OrgName)+"/"+tab, http.StatusSeeOther)
	})
}

func (s *Server) createProjectSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	req := projectRequest{Name: r.PostFormValue("name"), DisplayName: r.PostFormValue("displayName")}
	_, err := s.createProject(r.Context(), c, req)
	return orgData{}, "Project " + req.Name + " created.", err
}

func (s *Server) deleteProjectSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	err := s.deleteObject(r.Context(), c, &tenancyv1.Project{}, r.PathValue("name"))
	return orgData{}, "Project " + r.PathValue("name") + " deleted.", err
}

func (s *Server) inviteMemberSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	req := memberRequest{Email: r.PostFormValue("email"), Role: r.PostFormValue("role"), Project: r.PostFormValue("project")}
	m, err := s.inviteMember(r.Context(), c, req)
	if err != nil {
		return orgData{}, "", err
	}
	return orgData{Invited: &m}, "", nil
}

func (s *Server) memberRoleSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	req := roleRequest{Role: r.PostFormValue("role")}
	m, err := s.setMemberRole(r.Context(), c, r.PathValue("name"), req)
	return orgData{}, m.Email + " is now " + req.Role + ".", err
}

func (s *Server) removeMemberSubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	err := s.deleteObject(r.Context(), c, &tenancyv1.Membership{}, r.PathValue("name"))
	return orgData{}, "Membership " + r.PathValue("name") + " removed.", err
}

func (s *Server) createKeySubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	req := apiKeyRequest{Name: r.PostFormValue("name"), Role: r.PostFormValue("role"), Project: r.PostFormValue("project")}
	if days := r.PostFormValue("expiresInDays"); days != "" {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 365 {
			return orgData{}, "", badRequest("expiresInDays", "must be a number of days from 1 to 365")
		}
		at := time.Now().Add(time.Duration(n) * 24 * time.Hour).UTC().Truncate(time.Second)
		req.ExpiresAt = &at
	}
	k, err := s.createAPIKey(r.Context(), c, req)
	if err != nil {
		return orgData{}, "", err
	}
	return orgData{Issued: &k}, "", nil
}

func (s *Server) rotateKeySubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	k, err := s.rotateAPIKey(r.Context(), c, r.PathValue("name"))
	if err != nil {
		return orgData{}, "", err
	}
	return orgData{Issued: &k}, "", nil
}

func (s *Server) deleteKeySubmit(r *http.Request, c orgCaller) (orgData, string, error) {
	err := s.deleteObject(r.Context(), c, &tenancyv1.APIKey{}, r.PathValue("name"))
	return orgData{}, "API key " + r.PathValue("name") + " deleted.", err
}
