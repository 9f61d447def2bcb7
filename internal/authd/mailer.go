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
