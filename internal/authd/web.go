package authd

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/authd/web"
)

// The web pages, for people in a browser: what they share is here, the pages themselves in
// web_signin.go, web_account.go and web_org.go, and what needs no server (templates, cookies,
// CSRF tokens) in package web.

// routeWeb routes the browser pages.
func (s *Server) routeWeb(mux *http.ServeMux, route func(pattern string, h http.HandlerFunc)) {
	mux.Handle("GET /static/", web.StaticFiles())
	route("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/account", http.StatusSeeOther) })
	route("GET /oauth2/authorize", s.authorize)
	route("POST /oauth2/authorize", s.authorize)
	route("GET /oauth2/logout", s.endSessionEndpoint)
	route("POST /oauth2/logout", s.endSessionEndpoint)
	route("GET /login", s.loginPage)
	route("POST /login", s.loginSubmit)
	route("POST /login/mfa", s.loginMFASubmit)
	route("GET /invite", s.invitePage)
	route("GET /forgot", s.forgotPage)
	route("POST /forgot", s.forgotSubmit)
	route("GET /reset", s.resetPage)
	route("POST /reset", s.resetSubmit)
	route("GET /verify", s.verifyPage)
	route("POST /verify", s.verifySubmit)
	route("POST /account/email/verification", s.inSession(s.verificationSubmit))
	route("GET /account/export", s.inSession(s.exportPage))
	route("POST /account/mfa/totp", s.inSession(s.enrolSubmit))
	route("GET /account/mfa/totp/qr.png", s.inSession(s.enrolQR))
	route("POST /account/mfa/totp/confirm", s.inSession(s.enrolConfirmSubmit))
	route("POST /account/mfa/totp/disable", s.inSession(s.disableTOTPSubmit))
	route("POST /invite", s.inviteSubmit)
	route("POST /logout", s.inSession(s.logoutSubmit))
	route("GET /account", s.inSession(s.accountPage))
	route("POST /account/password", s.inSession(s.passwordSubmit))
	route("POST /account/sessions/{id}/end", s.inSession(s.sessionEndSubmit))
	route("POST /account/sessions/end-others", s.inSession(s.sessionEndSubmit))
	route("POST /account/delete", s.inSession(s.deleteAccountSubmit))
	route("POST /account/apps/{client}/revoke", s.inSession(s.revokeAppSubmit))
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
	// Mail: authd sends mail, so the pages offer what needs it (a forgotten password, verification).
	Mail bool
	Data any
}

// render writes a page (web.Pages.Render), logging what the template fails at.
func (s *Server) render(w http.ResponseWriter, status int, page string, v view) {
	v.Mail = s.mail != nil
	if err := s.pages.Render(w, status, page, v); err != nil {
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

// errCSRF refuses a form without the CSRF token of its session or browser.
var errCSRF = &problem{Status: http.StatusForbidden, Code: "csrf",
	Message: "The form expired or did not come from this site. Reload the page and try again."}

// refuseForeignForm answers page with errCSRF when a form shown before a session (login,
// invitation, reset) lacks its double-submitted token, and says whether it did.
func (s *Server) refuseForeignForm(w http.ResponseWriter, r *http.Request, page string, v view) bool {
	if s.site.CheckLoginCSRF(r) {
		return false
	}
	v.Problem = errCSRF
	s.render(w, http.StatusForbidden, page, v)
	return true
}

// inSession runs h for a browser with a live session, checking the CSRF token of every POST;
// other browsers go to the login page.
func (s *Server) inSession(h func(w http.ResponseWriter, r *http.Request, ws webSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.site.Cookie(r, web.SessionCookie)
		var ws webSession
		if err == nil {
			ws, err = s.store.webSession(r.Context(), c.Value, s.sessionPolicy())
		}
		if err != nil {
			if !errors.Is(err, errNoWebSession) && !errors.Is(err, http.ErrNoCookie) {
				s.renderFailure(w, r, "error", view{Title: "Unavailable"}, err)
				return
			}
			s.site.ClearCookie(w, web.SessionCookie)
			if r.Method != http.MethodGet {
				s.render(w, http.StatusUnauthorized, "error", view{Title: "Signed out",
					Problem: &problem{Status: http.StatusUnauthorized, Message: "Your session ended. Log in again."}})
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !s.site.CheckSessionCSRF(r, c.Value) {
			s.render(w, http.StatusForbidden, "error", view{Title: "Refused", User: &ws.User, Problem: errCSRF})
			return
		}
		ctx := context.WithValue(r.Context(), csrfKey{}, web.SessionCSRF(c.Value))
		h(w, r.WithContext(ctx), ws)
	}
}

// csrfKey holds the session's CSRF token in a request's context, for the pages' forms.
type csrfKey struct{}

// baseView fills what every page of a session shows: the user, the CSRF token, a flash message
// and the organizations of the selector.
func (s *Server) baseView(w http.ResponseWriter, r *http.Request, ws webSession, title string) (view, []membership, error) {
	v := view{Title: title, User: &ws.User, Flash: s.site.TakeFlash(w, r)}
	v.CSRF, _ = r.Context().Value(csrfKey{}).(string)
	all, err := s.store.memberships(r.Context(), ws.User.ID)
	for _, m := range all {
		if m.State == string(tenancyv1.MembershipActive) && (len(v.Orgs) == 0 || v.Orgs[len(v.Orgs)-1] != m.OrgName) {
			v.Orgs = append(v.Orgs, m.OrgName)
		}
	}
	return v, all, err
}
