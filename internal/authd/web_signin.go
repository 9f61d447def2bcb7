package authd

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/tenancy-dev/tenancy/internal/authd/web"
)

// Signing in and out: the login page, logout, and the invitation page.

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login", view{Title: "Log in", CSRF: s.site.LoginCSRF(w, r), Flash: s.site.TakeFlash(w, r),
		Data: map[string]string{"Next": web.SafeNext(r.URL.Query().Get("next")), "Email": ""}})
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	email := r.PostFormValue("email")
	data := map[string]string{"Next": web.SafeNext(r.PostFormValue("next")), "Email": email}
	v := view{Title: "Log in", CSRF: s.site.LoginCSRF(w, r), Data: data}
	if !s.site.CheckLoginCSRF(r) {
		v.Problem = errCSRF
		s.render(w, http.StatusForbidden, "login", v)
		return
	}
	u, err := s.passwordLogin(w, r, email, r.PostFormValue("password"))
	if err != nil {
		s.renderFailure(w, r, "login", v, err)
		return
	}
	s.noticeNewSignIn(r, u)
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
	if previous, err := s.site.Cookie(r, web.SessionCookie); err == nil {
		if err := s.endSession(r, previous.Value, "logout"); err != nil {
			return err
		}
	}
	token, _, err := s.store.startSession(r.Context(), u.ID, tenantIDs{}, webSessionKind, s.sessionPolicy(), s.clientOf(r))
	if err != nil {
		return err
	}
	s.site.SetCookie(w, web.SessionCookie, token, s.cfg.SessionLifetime)
	s.site.ClearCookie(w, web.LoginCSRFCookie)
	return nil
}

func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request, _ webSession) {
	c, _ := s.site.Cookie(r, web.SessionCookie)
	if err := s.endSession(r, c.Value, "logout"); err != nil {
		s.renderFailure(w, r, "error", view{Title: "Log out"}, err)
		return
	}
	s.site.ClearCookie(w, web.SessionCookie)
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
	v := view{Title: "Invitation", CSRF: s.site.LoginCSRF(w, r)}
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
	if !s.site.CheckLoginCSRF(r) {
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
	s.site.Flash(w, "Welcome to "+inv.OrgName+".")
	http.Redirect(w, r, "/orgs/"+url.PathEscape(inv.OrgName)+"/members", http.StatusSeeOther)
}
