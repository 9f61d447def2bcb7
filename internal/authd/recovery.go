package authd

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
)

// Proving an address and resetting a forgotten password, both through a token mailed to the
// account's address. The pages (web_recovery.go) and the JSON endpoints share this code.

type forgotRequest struct {
	Email string `json:"email"`
}

type resetRequest struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

type verifyRequest struct {
	Token string `json:"token"`
}

// forgotAnswer is the answer to every request for a reset link, whether the account exists or not.
var forgotAnswer = map[string]string{"status": "If an account has this address, a link to reset its password is on its way. It works for 15 minutes."}

// errInvalidResetToken and errInvalidVerifyToken refuse a token that does not work, without
// telling why (unknown, used, expired).
var (
	errInvalidResetToken = &problem{Status: http.StatusBadRequest, Code: "invalid_token",
		Message: "token: this reset link is unknown, already used or expired; ask for a new one",
		Fields:  []fieldProblem{{Field: "token", Type: "FieldValueInvalid", Message: "unknown, already used or expired"}}}
	errInvalidVerifyToken = &problem{Status: http.StatusBadRequest, Code: "invalid_token",
		Message: "token: this confirmation link is unknown, already used or expired; ask for a new one from your account page",
		Fields:  []fieldProblem{{Field: "token", Type: "FieldValueInvalid", Message: "unknown, already used or expired"}}}
)

// requestPasswordReset mails a reset link to the account of email, if there is one that may sign
// in. The answer is the same either way; only the address's throttle can refuse.
func (s *Server) requestPasswordReset(w http.ResponseWriter, r *http.Request, email string) error {
	if s.mail == nil {
		return errMailDisabled
	}
	email = db.NormalizeEmail(email)
	if !strings.Contains(email, "@") || len(email) > 254 {
		return badRequest("email", "must be an email address")
	}
	if err := s.throttleAddress(w, r); err != nil {
		return err
	}
	u, found, err := s.store.userByEmail(r.Context(), email)
	if err != nil || !found || u.Disabled {
		return err
	}
	issued, err := s.mailToken(r.Context(), u, purposePasswordReset, mail.PasswordReset, "/reset", passwordResetTTL)
	if issued {
		s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "password.reset_requested", Target: "user/" + u.Email})
	}
	return err
}

func (s *Server) forgotPassword(w http.ResponseWriter, r *http.Request) {
	req, err := bodyOf[forgotRequest](r)
	if err == nil {
		err = s.requestPasswordReset(w, r, req.Email)
	}
	if err != nil {
		s.answerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, forgotAnswer)
}

// resetPassword sets a new password with a mailed reset token. The token proves the address too,
// so the account becomes verified. Every session of the account ends, and a notice is mailed.
func (s *Server) resetPassword(r *http.Request, req resetRequest) error {
	ctx := r.Context()
	if err := checkNewPassword(req.Password); err != nil {
		return badRequest("password", strings.TrimPrefix(err.Error(), "password: "))
	}
	if len(req.Token) > 128 {
		return errInvalidResetToken
	}
	// A token that cannot work costs no argon2id hash.
	if _, err := s.store.emailTokenUser(ctx, req.Token, purposePasswordReset); err != nil {
		if errors.Is(err, errInvalidEmailToken) {
			return errInvalidResetToken
		}
		return err
	}
	hash, err := s.hashPassword(req.Password)
	if err != nil {
		return err
	}
	var verified bool
	u, err := s.store.useEmailToken(ctx, req.Token, purposePasswordReset, func(tx pgx.Tx, u user) error {
		if err := setPassword(ctx, tx, u.ID, hash); err != nil {
			return err
		}
		var err error
		if verified, err = markEmailVerified(ctx, tx, u); err != nil {
			return err
		}
		return s.notify(ctx, tx, u, mail.PasswordChanged, mail.Data{At: time.Now(), Address: s.clientOf(r).Address})
	})
	if errors.Is(err, errInvalidEmailToken) {
		return errInvalidResetToken
	}
	if err != nil {
		return err
	}
	s.pokeMail()
	// Whoever held the old password, or a session, is out; failures counted against the
	// account no longer slow its owner down.
	ended, err := s.store.endSessions(ctx, u.ID, "", "")
	s.accounts.succeed(u.Email)
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "password.reset", Target: "user/" + u.Email,
		Details: map[string]any{"sessions_ended": len(ended)}})
	if verified {
		s.emailVerified(r, u, "password reset link")
	}
	return err
}

func (s *Server) resetPasswordJSON(w http.ResponseWriter, r *http.Request) {
	req, err := bodyOf[resetRequest](r)
	if err == nil {
		err = s.resetPassword(r, req)
	}
	if err != nil {
		s.answerError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// requestVerification mails u a link that proves their address.
func (s *Server) requestVerification(ctx context.Context, u user) error {
	switch {
	case s.mail == nil:
		return errMailDisabled
	case u.EmailVerified:
		return &problem{Status: http.StatusConflict, Code: "already_verified", Message: "your address is already verified"}
	}
	issued, err := s.mailToken(ctx, u, purposeVerifyEmail, mail.VerifyEmail, "/verify", verifyEmailTTL)
	if err == nil && !issued {
		return &problem{Status: http.StatusTooManyRequests, Code: "slow_down",
			Message: "a confirmation link was mailed several times in the last 15 minutes; use the latest one or try later"}
	}
	return err
}

func (s *Server) requestOwnVerification(ctx context.Context, w http.ResponseWriter, _ *http.Request, u user, _ string) error {
	if err := s.requestVerification(ctx, u); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "A confirmation link is on its way to " + u.Email + "."})
	return nil
}

// verifyEmail spends a verification token: its account's address is proven. Invited memberships
// of a verified user become Active, so their Membership objects are woken.
func (s *Server) verifyEmail(r *http.Request, token string) (user, error) {
	if len(token) > 128 {
		return user{}, errInvalidVerifyToken
	}
	var verified bool
	u, err := s.store.useEmailToken(r.Context(), token, purposeVerifyEmail, func(tx pgx.Tx, u user) error {
		var err error
		verified, err = markEmailVerified(r.Context(), tx, u)
		return err
	})
	if errors.Is(err, errInvalidEmailToken) {
		return user{}, errInvalidVerifyToken
	}
	if err != nil {
		return user{}, err
	}
	if verified {
		s.emailVerified(r, u, "confirmation link")
	}
	u.EmailVerified = true
	return u, nil
}

func (s *Server) verifyEmailJSON(w http.ResponseWriter, r *http.Request) {
	req, err := bodyOf[verifyRequest](r)
	if err == nil {
		_, err = s.verifyEmail(r, req.Token)
	}
	if err != nil {
		s.answerError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// emailVerified audits that a token mailed to u (by: which) proved the address, and wakes the
// memberships that waited for it.
func (s *Server) emailVerified(r *http.Request, u user, by string) {
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "user.email_verified", Target: "user/" + u.Email,
		Details: map[string]any{"by": by}})
	s.wakeInvitedMemberships(r.Context(), u)
}

// wakeInvitedMemberships has the controller reconcile the user's Invited memberships now that
// the user is verified: they become Active. A failure only delays that to the next resync.
func (s *Server) wakeInvitedMemberships(ctx context.Context, u user) {
	all, err := s.store.memberships(ctx, u.ID)
	if err != nil {
		s.log.Error(err, "Listing the memberships of a newly verified user", "user", u.ID)
		return
	}
	for _, m := range all {
		if m.State != "Invited" {
			continue
		}
		if err := s.wakeMembership(ctx, invitation{MembershipUID: m.uid, Namespace: m.namespace}); err != nil {
			s.log.Error(err, "Waking a Membership of a newly verified user", "membership", m.uid)
		}
	}
}
