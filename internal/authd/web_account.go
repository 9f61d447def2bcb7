package authd

import (
	"fmt"
	"net/http"

	"github.com/tenancy-dev/tenancy/internal/authd/web"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// The account page: memberships, password, sessions, and deleting the account.

// accountData is the account page's content.
type accountData struct {
	Memberships []membership
	Sessions    []session
	// MFAEnabled: an authenticator is enrolled. Enrolment is one being set up (its QR code is
	// at /account/mfa/totp/qr.png); RecoveryCodes are shown once, right after it is confirmed.
	MFAEnabled    bool
	Enrolment     *totpEnrolment
	RecoveryCodes []string
	// Consents are the applications (OAuth clients that are not first-party) the person allowed.
	Consents []appConsent
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request, ws webSession) {
	s.renderAccount(w, r, ws, http.StatusOK, nil)
}

func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, ws webSession, status int, failure error) {
	s.renderAccountWith(w, r, ws, status, accountData{}, failure)
}

// renderAccountWith shows the account page with what data already holds (an enrolment, the
// recovery codes) and the rest read now.
func (s *Server) renderAccountWith(w http.ResponseWriter, r *http.Request, ws webSession, status int, data accountData, failure error) {
	v, all, err := s.baseView(w, r, ws, "Your account")
	if err == nil {
		data.Sessions, err = s.store.sessions(r.Context(), ws.User.ID, ws.FamilyID)
	}
	if err == nil {
		data.MFAEnabled, err = s.store.hasTOTP(r.Context(), ws.User.ID)
	}
	if err == nil {
		data.Consents, err = s.store.consents(r.Context(), ws.User.ID)
	}
	data.Memberships = all
	v.Data = data
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
	s.site.Flash(w, "Your password is changed; your other sessions are ended.")
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
	s.site.Flash(w, fmt.Sprintf("%d session(s) ended.", ended))
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

// deleteAccountSubmit deletes the account once the person typed its address and proved the
// password (and second factor); it ends this session too and leaves them at the login page.
func (s *Server) deleteAccountSubmit(w http.ResponseWriter, r *http.Request, ws webSession) {
	if db.NormalizeEmail(r.PostFormValue("confirm_email")) != ws.User.Email {
		s.renderAccount(w, r, ws, http.StatusBadRequest, badRequest("confirm_email", "type your address to confirm that the account is to be deleted"))
		return
	}
	req := deletionRequest{Password: r.PostFormValue("password"), OTP: r.PostFormValue("code")}
	if err := s.deleteOwnAccount(r, w, ws.User, req); err != nil {
		s.renderAccount(w, r, ws, http.StatusBadRequest, err)
		return
	}
	s.site.ClearCookie(w, web.SessionCookie)
	s.site.Flash(w, "Your account is deleted: your memberships end and your data is erased within a minute.")
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// revokeAppSubmit forgets the person's consent to an application and ends its sessions.
func (s *Server) revokeAppSubmit(w http.ResponseWriter, r *http.Request, ws webSession) {
	clientID := r.PathValue("client")
	revoked, err := s.store.revokeConsent(r.Context(), ws.User.ID, clientID)
	if err != nil {
		s.renderAccount(w, r, ws, http.StatusInternalServerError, err)
		return
	}
	if revoked {
		s.audit(r, auditEntry{Actor: ws.User.Email, ActorUserID: &ws.User.ID, Action: "oauth.consent_revoked", Target: "oauthclient/" + clientID})
		s.site.Flash(w, "The application can no longer sign you in without asking, and its sessions are ended.")
	}
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}
