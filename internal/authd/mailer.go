package authd

import (
	"context"
	"net/http"
	"time"

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

// notify queues a notice for u through q (the transaction that decides it, or the pool); the
// caller pokes the dispatcher after the commit.
func (s *Server) notify(ctx context.Context, q mail.Execer, u user, kind mail.Kind, data mail.Data) error {
	if s.mail == nil {
		return nil
	}
	data.AccountURL = s.cfg.PublicURL + "/account"
	msg, err := s.mail.Templates.Render(kind, u.Email, data)
	if err != nil {
		return err
	}
	return mail.Enqueue(ctx, q, msg)
}

func (s *Server) pokeMail() {
	if s.mail != nil {
		s.mail.Dispatcher.Poke()
	}
}

// newSignInAddress reports whether this sign-in comes from an address the account has not
// started a session from within the familiar period, and is not the account's first. It is
// asked before the session starts (the new session makes the address familiar); false without
// mail, or when the database fails (logged: the sign-in goes on).
func (s *Server) newSignInAddress(r *http.Request, u user) bool {
	if s.mail == nil {
		return false
	}
	familiar, err := s.store.familiarAddress(r.Context(), u.Email, s.clientOf(r).Address, s.cfg.Throttle.FamiliarFor)
	signedInBefore := false
	if err == nil && !familiar {
		signedInBefore, err = s.store.hasSession(r.Context(), u.ID)
	}
	if err != nil {
		s.log.Error(err, "Reading where an account signed in from", "user", u.ID)
		return false
	}
	return signedInBefore
}

// mailNewSignIn queues the notice of a sign-in from a new address; a failure is logged, the
// sign-in stands.
func (s *Server) mailNewSignIn(r *http.Request, u user) {
	c := s.clientOf(r)
	if err := s.notify(r.Context(), s.store.pool, u, mail.NewSignIn,
		mail.Data{At: time.Now(), Address: c.Address, Device: truncate(c.UserAgent, 120)}); err != nil {
		s.log.Error(err, "Queueing the notice of a sign-in from a new address", "user", u.ID)
		return
	}
	s.pokeMail()
}
