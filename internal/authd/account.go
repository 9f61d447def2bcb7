package authd

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/mail"
)

// What people do to their own account, through the REST API and the account page alike.

// passwordRequest changes the password; the account page fills it from its form.
type passwordRequest struct {
	CurrentPassword string `json:"currentPassword"`
	NewPassword     string `json:"newPassword"`
}

// changePassword sets a new password once the current one is proven, ends the user's other
// sessions (whoever knew the old password is logged out) and mails a notice.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, u user, req passwordRequest, keep string) error {
	ctx := r.Context()
	if err := checkNewPassword(req.NewPassword); err != nil {
		return badRequest("newPassword", strings.TrimPrefix(err.Error(), "password: "))
	}
	if err := s.provePassword(w, r, u, "currentPassword", req.CurrentPassword); err != nil {
		return err
	}
	hash, err := s.hashPassword(req.NewPassword)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.store.pool, func(tx pgx.Tx) error {
		if err := setPassword(ctx, tx, u.ID, hash); err != nil {
			return err
		}
		return s.notify(ctx, tx, u, mail.PasswordChanged, mail.Data{At: time.Now(), Address: s.clientOf(r).Address})
	})
	if err != nil {
		return err
	}
	s.pokeMail()
	ended, err := s.store.endSessions(ctx, u.ID, "", keep)
	s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "password.changed", Target: "user/" + u.Email,
		Details: map[string]any{"sessions_ended": len(ended)}})
	return err
}

// provePassword checks the signed-in person's password before an act a stolen session alone
// must not do (throttled like login); a wrong one is refused naming field.
func (s *Server) provePassword(w http.ResponseWriter, r *http.Request, u user, field, password string) error {
	_, err := s.checkPassword(w, r, u.Email, password)
	var p *problem
	if errors.As(err, &p) && p.Code == "invalid_credentials" {
		return &problem{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: field + ": the password is wrong",
			Fields: []fieldProblem{{Field: field, Type: "FieldValueInvalid", Message: "the password is wrong"}}}
	}
	return err
}

// endSessionsOf ends the user's live session family, or all but keep, audits each, and says
// how many it ended.
func (s *Server) endSessionsOf(r *http.Request, u user, family, keep string) (int, error) {
	ended, err := s.store.endSessions(r.Context(), u.ID, family, keep)
	for _, id := range ended {
		s.audit(r, auditEntry{Actor: u.Email, ActorUserID: &u.ID, Action: "session.ended", Target: "session/" + id})
	}
	return len(ended), err
}
