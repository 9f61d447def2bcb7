package authd

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/mail"
)

// The mail authd sends: the links that verify an address and reset a password, and the notices
// of a changed password and of a sign-in from a new address. Everything goes through the outbox
// (package mail); without --smtp-url authd sends nothing and the flows that need mail answer 503.

const (
	// passwordResetTTL is how long a reset link works.
	passwordResetTTL = 15 * time.Minute
	// verifyEmailTTL is how long a verification link works.
	verifyEmailTTL = 24 * time.Hour
)

// errMailDisabled answers the flows that need mail when authd has no SMTP server.
var errMailDisabled = &problem{Status: http.StatusServiceUnavailable, Code: "mail_disabled",
	Message: "this server sends no mail (authd runs without --smtp-url); ask a platform admin"}

// link is an absolute URL of a page of authd's, with the token in its query.
func (s *Server) link(path, token string) string {
	return s.cfg.PublicURL + path + "?token=" + token
}

// mailToken mails u a token of purpose, carried by a link to page, unless the account had too
// many lately; it says whether it did.
func (s *Server) mailToken(ctx context.Context, u user, purpose emailPurpose, kind mail.Kind, page string, ttl time.Duration) (bool, error) {
	issued, err := s.store.issueEmailToken(ctx, u, purpose, ttl, func(token string, expires time.Time) (mail.Message, error) {
		return s.mail.Templates.Render(kind, u.Email, mail.Data{Link: s.link(page, token), ExpiresAt: expires})
	})
	if issued {
		s.mail.Dispatcher.Poke()
	}
	return issued, err
}

// notify queues a notice for u in tx; the caller pokes the dispatcher after the commit.
func (s *Server) notify(ctx context.Context, tx pgx.Tx, u user, kind mail.Kind, data mail.Data) error {
	if s.mail == nil {
		return nil
	}
	data.AccountURL = s.cfg.PublicURL + "/account"
	msg, err := s.mail.Templates.Render(kind, u.Email, data)
	if err != nil {
		return err
	}
	return mail.Enqueue(ctx, tx, msg)
}

func (s *Server) pokeMail() {
	if s.mail != nil {
		s.mail.Dispatcher.Poke()
	}
}

// noticeNewSignIn mails u when this sign-in comes from an address the account has not started a
// session from within the familiar period, unless it is the account's first session. A failure
// is logged: the sign-in goes on.
func (s *Server) noticeNewSignIn(r *http.Request, u user) {
	if s.mail == nil {
		return
	}
	c := s.clientOf(r)
	ctx := r.Context()
	err := pgx.BeginFunc(ctx, s.store.pool, func(tx pgx.Tx) error {
		var unfamiliar bool
		if err := tx.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM tenancy.refresh_tokens WHERE user_id = $1)
			   AND NOT EXISTS (SELECT 1 FROM tenancy.refresh_tokens WHERE user_id = $1 AND client_address = $2
			                   AND created_at > now() - make_interval(secs => $3))`,
			u.ID, c.Address, s.cfg.Throttle.FamiliarFor.Seconds()).Scan(&unfamiliar); err != nil || !unfamiliar {
			return err
		}
		return s.notify(ctx, tx, u, mail.NewSignIn, mail.Data{At: time.Now(), Address: c.Address, Device: truncate(c.UserAgent, 120)})
	})
	if err != nil {
		s.log.Error(err, "Queueing the notice of a sign-in from a new address", "user", u.ID)
		return
	}
	s.pokeMail()
}
