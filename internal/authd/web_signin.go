package authd

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/tenancy-dev/tenancy/internal/authd/web"
)

// Signing in and out: the login page, logout, and the invitation page.

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	next := web.SafeNext(r.URL.Query().Get("next"))
	s.allowAuthorizeTarget(w, r, next)
	s.render(w, http.StatusOK, "login", view{Title: "Log in", CSRF: s.site.LoginCSRF(w, r), Flash: s.site.TakeFlash(w, r),
		Data: map[string]string{"Next": next, "Email": truncate(r.URL.Query().Get("login_hint"), 320)}})
}

// allowAuthorizeTarget lets the login forms end at the redirect URI of the authorization request
// that next continues, when it is one of a registered client (see web.AllowFormTarget).
func (s *Server) allowAuthorizeTarget(w http.ResponseWriter, r *http.Request, next string) {
	u, err := url.Parse(next)
	if err != nil || u.Path != "/oauth2/authorize" {
		return
	}
	q := u.Query()
	client, err := s.store.oauthClient(r.Context(), q.Get("client_id"))
	if err == nil && client.allowsRedirect(q.Get("redirect_uri")) {
		web.AllowFormTarget(w, q.Get("redirect_uri"))
	}
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	email := r.PostFormValue("email")
	data := map[string]string{"Next": web.SafeNext(r.PostFormValue("next")), "Email": email}
	s.allowAuthorizeTarget(w, r, data["Next"])
	v := view{Title: "Log in", CSRF: s.site.LoginCSRF(w, r), Data: data}
	if s.refuseForeignForm(w, r, "login", v) {
		return
	}
	u, err := s.checkPassword(w, r, email, r.PostFormValue("password"))
	var enrolled bool
	if err == nil {
		enrolled, err = s.store.hasTOTP(r.Context(), u.ID)
	}
	if err != nil {
		s.renderFailure(w, r, "login", v, err)
		return
	}
	if enrolled {
		ticket, err := s.store.newLoginChallenge(r.Context(), u.ID)
		if err != nil {
			s.renderFailure(w, r, "login", v, err)
			return
		}
		data["Ticket"] = ticket
		v.Title = "Two-factor authentication"
		s.render(w, http.StatusOK, "login_mfa", v)
		return
	}
	if err := s.completeWebLogin(w, r, u, false); err != nil {
		s.renderFailure(w, r, "login", v, err)
		return
	}
	http.Redirect(w, r, data["Next"], http.StatusSeeOther)
}

// loginMFASubmit is the second step of a login: the ticket of the first and a code.
func (s *Server) loginMFASubmit(w http.ResponseWriter, r *http.Request) {
	data := map[string]string{"Next": web.SafeNext(r.PostFormValue("next")), "Ticket": r.PostFormValue("ticket")}
	s.allowAuthorizeTarget(w, r, data["Next"])
	v := view{Title: "Two-factor authentication", CSRF: s.site.LoginCSRF(w, r), Data: data}
	if s.refuseForeignForm(w, r, "login_mfa", v) {
		return
	}
	u, done, err := s.store.takeLoginChallenge(r.Context(), data["Ticket"])
	if errors.Is(err, errNoLoginChallenge) {
		v.Title = "Log in"
		v.Problem = &problem{Status: http.StatusUnauthorized, Code: "login_expired", Message: err.Error()}
		s.render(w, http.StatusUnauthorized, "login", v)
		return
	}
	var mfa bool
	if err == nil {
		mfa, err = s.secondFactor(r, u, r.PostFormValue("otp"), r.PostFormValue("recovery_code"))
		done(err == nil)
	}
	if err == nil && !mfa {
		err = errSecondFactorMissing // the authenticator was removed meanwhile: log in again
	}
	if err == nil {
		err = s.completeWebLogin(w, r, u, true)
	}
	if err != nil {
		s.renderFailure(w, r, "login_mfa", v, err)
		return
	}
	http.Redirect(w, r, data["Next"], http.StatusSeeOther)
}

// completeWebLogin counts and audits a login whose credentials were proven, starts the browser's
// session, and mails a notice of a new address.
func (s *Server) completeWebLogin(w http.ResponseWriter, r *http.Request, u user, mfa bool) error {
	s.metrics.logins.WithLabelValues("ok").Inc()
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "login.succeeded", Target: "user/" + u.Email,
		Details: map[string]any{"via": "web", "mfa": mfa}})
	newAddress := s.newSignInAddress(r, u)
	if err := s.startWebSession(w, r, u, mfa); err != nil {
		return err
	}
	if newAddress {
		s.mailNewSignIn(r, u)
	}
	return nil
}

// startWebSession starts a session for u and gives the browser its cookie, ending the session
// the browser had (nobody could see or end it otherwise). The session is not tied to one
// organization: pages act in the one they show, if it lets this session in (requireMFA).
func (s *Server) startWebSession(w http.ResponseWriter, r *http.Request, u user, mfa bool) error {
	if previous, err := s.site.Cookie(r, web.SessionCookie); err == nil {
		if err := s.endSession(r, previous.Value, "logout"); err != nil {
			return err
		}
	}
	token, _, err := s.store.startSession(r.Context(), u.ID, tenantIDs{}, webSessionKind, mfa, s.sessionPolicy(), s.clientOf(r))
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
	if s.refuseForeignForm(w, r, "invite", v) {
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
	inv, err := s.redeemInvitation(w, r, acceptRequest{Token: token, Password: password,
		OTP: r.PostFormValue("otp"), RecoveryCode: r.PostFormValue("recovery_code")}, nil)
	var proof *errProof
	if errors.As(err, &proof) {
		err = &problem{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: proof.message}
	}
	if err != nil {
		s.renderFailure(w, r, "invite", v, err)
		return
	}
	if err := s.startWebSession(w, r, user{ID: inv.UserID, Email: inv.Email}, inv.SecondFactor); err != nil {
		s.renderFailure(w, r, "invite", v, err)
		return
	}
	s.site.Flash(w, "Welcome to "+inv.OrgName+".")
	http.Redirect(w, r, "/orgs/"+url.PathEscape(inv.OrgName)+"/members", http.StatusSeeOther)
}
