package authd

import (
	"errors"
	"net/http"
)

// The account page's two-factor authentication: enrol an authenticator (scan the QR code, type
// a code, note the recovery codes shown once) and turn it off.

func (s *Server) enrolSubmit(w http.ResponseWriter, r *http.Request, ws webSession) {
	e, err := s.startEnrolment(r, ws.User)
	if err != nil {
		s.renderAccount(w, r, ws, http.StatusConflict, err)
		return
	}
	s.renderAccountWith(w, r, ws, http.StatusOK, accountData{Enrolment: &e}, nil)
}

// enrolQR serves the QR code of the enrolment being set up, from this site (the pages allow no
// other image source), never cached.
func (s *Server) enrolQR(w http.ResponseWriter, r *http.Request, ws webSession) {
	png, err := s.totpQR(r.Context(), ws.User)
	if errors.Is(err, errNoTOTPEnrolment) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.log.Error(err, "Drawing a TOTP QR code")
		http.Error(w, "the QR code could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(png)
}

func (s *Server) enrolConfirmSubmit(w http.ResponseWriter, r *http.Request, ws webSession) {
	codes, err := s.confirmEnrolment(r, ws.User, r.PostFormValue("code"))
	if err != nil {
		// The enrolment goes on: show its QR code again beside the refusal.
		data := accountData{}
		if key, pendingErr := s.pendingKey(r.Context(), ws.User); pendingErr == nil {
			data.Enrolment = &totpEnrolment{Secret: key.Secret(), OTPAuthURI: key.URL()}
		}
		s.renderAccountWith(w, r, ws, http.StatusBadRequest, data, err)
		return
	}
	v := accountData{RecoveryCodes: codes}
	s.renderAccountWith(w, r, ws, http.StatusOK, v, nil)
}

func (s *Server) disableTOTPSubmit(w http.ResponseWriter, r *http.Request, ws webSession) {
	if err := s.disableTOTP(r, ws.User, r.PostFormValue("code"), r.PostFormValue("recovery_code")); err != nil {
		s.renderAccount(w, r, ws, http.StatusBadRequest, err)
		return
	}
	s.site.Flash(w, "Two-factor authentication is off.")
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}
