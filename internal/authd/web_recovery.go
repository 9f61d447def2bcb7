package authd

import (
	"errors"
	"net/http"
)

// The pages of a forgotten password and of a verification link. Their links arrive by mail, and
// mail scanners open links: opening one only shows a form, and only posting it acts.

func (s *Server) forgotPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "forgot", view{Title: "Forgot your password", CSRF: s.site.LoginCSRF(w, r), Data: map[string]string{"Email": ""}})
}

func (s *Server) forgotSubmit(w http.ResponseWriter, r *http.Request) {
	email := r.PostFormValue("email")
	v := view{Title: "Forgot your password", CSRF: s.site.LoginCSRF(w, r), Data: map[string]string{"Email": email}}
	if s.refuseForeignForm(w, r, "forgot", v) {
		return
	}
	if err := s.requestPasswordReset(w, r, email); err != nil {
		s.renderFailure(w, r, "forgot", v, err)
		return
	}
	v.Data = map[string]string{"Email": email, "Sent": forgotAnswer["status"]}
	s.render(w, http.StatusOK, "forgot", v)
}

// resetView is the reset page for token, or false after answering the error page: a link that
// cannot work shows why at once, not after a new password was typed.
func (s *Server) resetView(w http.ResponseWriter, r *http.Request, token string) (view, bool) {
	v := view{Title: "Choose a new password", CSRF: s.site.LoginCSRF(w, r), Data: map[string]string{"Token": token}}
	if len(token) > 128 {
		s.render(w, http.StatusNotFound, "error", view{Title: "Reset link", Problem: errInvalidResetToken})
		return v, false
	}
	u, err := s.store.emailTokenUser(r.Context(), token, purposePasswordReset)
	switch {
	case errors.Is(err, errInvalidEmailToken):
		s.render(w, http.StatusNotFound, "error", view{Title: "Reset link", Problem: errInvalidResetToken})
		return v, false
	case err != nil:
		s.renderFailure(w, r, "error", view{Title: "Reset link"}, err)
		return v, false
	}
	v.Data = map[string]string{"Token": token, "Email": u.Email}
	return v, true
}

func (s *Server) resetPage(w http.ResponseWriter, r *http.Request) {
	if v, ok := s.resetView(w, r, r.URL.Query().Get("token")); ok {
		s.render(w, http.StatusOK, "reset", v)
	}
}

func (s *Server) resetSubmit(w http.ResponseWriter, r *http.Request) {
	v, ok := s.resetView(w, r, r.PostFormValue("token"))
	if !ok {
		return
	}
	if s.refuseForeignForm(w, r, "reset", v) {
		return
	}
	password := r.PostFormValue("password")
	if password != r.PostFormValue("confirm") {
		v.Problem = badRequest("confirm", "the two passwords differ")
		s.render(w, http.StatusBadRequest, "reset", v)
		return
	}
	if err := s.throttleAddress(w, r); err != nil {
		s.renderFailure(w, r, "reset", v, err)
		return
	}
	if err := s.resetPassword(r, resetRequest{Token: r.PostFormValue("token"), Password: password}); err != nil {
		s.renderFailure(w, r, "reset", v, err)
		return
	}
	s.site.Flash(w, "Your password is changed, and every session was signed out. Log in with the new password.")
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) verifyPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "verify", view{Title: "Confirm your address", CSRF: s.site.LoginCSRF(w, r),
		Data: map[string]string{"Token": r.URL.Query().Get("token")}})
}

func (s *Server) verifySubmit(w http.ResponseWriter, r *http.Request) {
	token := r.PostFormValue("token")
	v := view{Title: "Confirm your address", CSRF: s.site.LoginCSRF(w, r), Data: map[string]string{"Token": token}}
	if s.refuseForeignForm(w, r, "verify", v) {
		return
	}
	u, err := s.verifyEmail(r, token)
	if err != nil {
		s.renderFailure(w, r, "verify", v, err)
		return
	}
	v.Data = map[string]string{"Verified": u.Email}
	s.render(w, http.StatusOK, "verify", v)
}

func (s *Server) verificationSubmit(w http.ResponseWriter, r *http.Request, ws webSession) {
	if err := s.requestVerification(r.Context(), ws.User); err != nil {
		s.renderAccount(w, r, ws, http.StatusBadRequest, err)
		return
	}
	s.site.Flash(w, "A confirmation link is on its way to "+ws.User.Email+".")
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}
