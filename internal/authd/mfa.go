package authd

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"net/http"
	"net/url"

	"github.com/pquerna/otp"

	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// Two-factor authentication: a TOTP authenticator, enrolled and turned off by the person, and
// its recovery codes. An account with one gives a code at every password login.

var (
	// errSecondFactorMissing asks a login for the code of the account's authenticator.
	errSecondFactorMissing = &problem{Status: http.StatusUnauthorized, Code: "mfa_required",
		Message: "this account uses two-factor authentication: send otp (the 6-digit code of your authenticator) or recovery_code"}
	// errSecondFactorWrong refuses a wrong, old or used code.
	errSecondFactorWrong = &problem{Status: http.StatusUnauthorized, Code: "invalid_otp",
		Message: "otp: the code is wrong, expired or already used",
		Fields:  []fieldProblem{{Field: "otp", Type: "FieldValueInvalid", Message: "wrong, expired or already used"}}}
)

// secondFactor checks the code (otp, or else recoveryCode) of an account that has an
// authenticator, and answers whether one was checked: false, with no error, for an account
// without one. A wrong code counts as a failed password attempt of the account.
func (s *Server) secondFactor(r *http.Request, u user, otp, recoveryCode string) (bool, error) {
	ctx := r.Context()
	enrolled, err := s.store.hasTOTP(ctx, u.ID)
	if err != nil || !enrolled {
		return false, err
	}
	if otp == "" && recoveryCode == "" {
		return false, errSecondFactorMissing
	}
	left, err := s.store.useSecondFactor(ctx, u.ID, truncate(otp, 16), truncate(recoveryCode, 64))
	if errors.Is(err, errWrongCode) {
		s.endPasswordAttempt(r, u.Email, false)
		s.metrics.logins.WithLabelValues("failed").Inc()
		s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "login.failed", Target: "user/" + u.Email,
			Details: map[string]any{"reason": "wrong second factor"}})
		return false, errSecondFactorWrong
	}
	if err != nil {
		return false, err
	}
	if recoveryCode != "" {
		s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "mfa.recovery_code_used", Target: "user/" + u.Email,
			Details: map[string]any{"recovery_codes_left": left}})
	}
	return true, nil
}

// totpIssuer labels the account in authenticator apps: Tenancy and the public host.
func (s *Server) totpIssuer() string {
	if u, err := url.Parse(s.cfg.PublicURL); err == nil && u.Hostname() != "" {
		return "Tenancy (" + u.Hostname() + ")"
	}
	return "Tenancy"
}

// totpEnrolment is the start of an enrolment: the secret to type in, or the URI (and its QR
// code) to scan.
type totpEnrolment struct {
	Secret     string `json:"secret"`
	OTPAuthURI string `json:"otpauth_uri"`
}

// startEnrolment makes a new secret for u, replacing an enrolment not yet confirmed.
func (s *Server) startEnrolment(r *http.Request, u user) (totpEnrolment, error) {
	key, err := newTOTPKey(s.totpIssuer(), u.Email)
	if err != nil {
		return totpEnrolment{}, err
	}
	if err := s.store.startTOTP(r.Context(), u.ID, key.Secret()); errors.Is(err, errTOTPEnrolled) {
		return totpEnrolment{}, &problem{Status: http.StatusConflict, Code: "mfa_already_enrolled",
			Message: "an authenticator is enrolled already: turn it off first (DELETE /api/v1/me/mfa/totp) to enrol another"}
	} else if err != nil {
		return totpEnrolment{}, err
	}
	return totpEnrolment{Secret: key.Secret(), OTPAuthURI: key.URL()}, nil
}

// confirmEnrolment turns u's enrolment on with a code of the authenticator, and answers the
// recovery codes: the only time they are shown.
func (s *Server) confirmEnrolment(r *http.Request, u user, code string) ([]string, error) {
	codes, err := newRecoveryCodes()
	if err != nil {
		return nil, err
	}
	switch err := s.store.confirmTOTP(r.Context(), u.ID, truncate(code, 16), codes); {
	case errors.Is(err, errNoTOTPEnrolment):
		return nil, &problem{Status: http.StatusConflict, Code: "mfa_not_started", Message: "no enrolment to confirm: start one with POST /api/v1/me/mfa/totp"}
	case errors.Is(err, errTOTPEnrolled):
		return nil, &problem{Status: http.StatusConflict, Code: "mfa_already_enrolled", Message: "the authenticator is enrolled already"}
	case errors.Is(err, errWrongCode):
		return nil, badRequest("code", "wrong or expired: type the code your authenticator shows now")
	case err != nil:
		return nil, err
	}
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "mfa.enrolled", Target: "user/" + u.Email})
	return codes, nil
}

// disableTOTP turns u's authenticator off; it takes a current code or a recovery code, so that
// a stolen session alone cannot remove the second factor.
func (s *Server) disableTOTP(r *http.Request, u user, code, recoveryCode string) error {
	if err := s.proveSecondFactor(r, u, "code", code, recoveryCode); err != nil {
		return err
	}
	if err := s.store.removeTOTP(r.Context(), u.ID); err != nil {
		return err
	}
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "mfa.disabled", Target: "user/" + u.Email})
	return nil
}

// proveSecondFactor spends a current code, or a recovery code, of u's authenticator before an
// act a stolen session alone must not do; field names the code in a refusal.
func (s *Server) proveSecondFactor(r *http.Request, u user, field, code, recoveryCode string) error {
	if code == "" && recoveryCode == "" {
		return badRequest(field, "required: a code of your authenticator (or recovery_code) proves that you hold it")
	}
	if _, err := s.store.useSecondFactor(r.Context(), u.ID, truncate(code, 16), truncate(recoveryCode, 64)); errors.Is(err, errWrongCode) {
		return badRequest(field, "wrong, expired or already used")
	} else if err != nil {
		return err
	}
	return nil
}

// pendingKey is the key of u's enrolment to confirm; errNoTOTPEnrolment when there is none.
func (s *Server) pendingKey(ctx context.Context, u user) (*otp.Key, error) {
	secret, err := s.store.pendingTOTP(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	return totpKeyOf(s.totpIssuer(), u.Email, secret)
}

// totpQR is the PNG of the QR code of u's enrolment to confirm.
func (s *Server) totpQR(ctx context.Context, u user) ([]byte, error) {
	key, err := s.pendingKey(ctx, u)
	if err != nil {
		return nil, err
	}
	img, err := key.Image(240, 240)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = png.Encode(&b, img)
	return b.Bytes(), err
}

type codeRequest struct {
	Code         string `json:"code"`
	RecoveryCode string `json:"recovery_code"`
}

func (s *Server) startOwnEnrolment(_ context.Context, w http.ResponseWriter, r *http.Request, u user, _ string) error {
	e, err := s.startEnrolment(r, u)
	if err == nil {
		writeJSON(w, http.StatusOK, e)
	}
	return err
}

func (s *Server) confirmOwnEnrolment(_ context.Context, w http.ResponseWriter, r *http.Request, u user, _ string) error {
	req, err := bodyOf[codeRequest](r)
	if err != nil {
		return err
	}
	codes, err := s.confirmEnrolment(r, u, req.Code)
	if err == nil {
		writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
	}
	return err
}

func (s *Server) disableOwnTOTP(_ context.Context, w http.ResponseWriter, r *http.Request, u user, _ string) error {
	req, err := bodyOf[codeRequest](r)
	if err != nil {
		return err
	}
	if err := s.disableTOTP(r, u, req.Code, req.RecoveryCode); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// hasSecondFactor reports whether claims come from a session that began with a second factor.
func hasSecondFactor(claims *tenancy.Claims) bool { return claims != nil && claims.HasSecondFactor() }
