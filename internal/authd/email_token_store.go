package authd

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/mail"
)

// emailPurpose is what a mailed token does: tenancy.email_tokens.purpose.
type emailPurpose string

const (
	purposeVerifyEmail   emailPurpose = "verify_email"
	purposePasswordReset emailPurpose = "password_reset"
)

// emailTokenBurst tokens of one purpose may be mailed to an account per emailTokenWindow: enough
// for a lost mail or two, too few to flood a mailbox.
const (
	emailTokenBurst  = 3
	emailTokenWindow = 15 * time.Minute
)

// errInvalidEmailToken is a mailed token that is unknown, used, expired, for another purpose, or
// sent to an address the account no longer has.
var errInvalidEmailToken = errors.New("invalid email token")

// issueEmailToken makes a token of purpose for u, valid for ttl, and queues the mail that carries
// it (compose renders it from the token and its expiry), in one transaction. It issues nothing and
// answers false when the account had emailTokenBurst such mails within emailTokenWindow.
func (s *Store) issueEmailToken(ctx context.Context, u user, purpose emailPurpose, ttl time.Duration,
	compose func(token string, expires time.Time) (mail.Message, error)) (bool, error) {
	token, hash, err := newOpaqueToken(tokenPrefix(purpose))
	if err != nil {
		return false, err
	}
	expires := time.Now().Add(ttl)
	msg, err := compose(token, expires)
	if err != nil {
		return false, err
	}
	issued := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The user's row lock makes concurrent requests count each other.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM tenancy.users WHERE id = $1 FOR UPDATE`, u.ID); err != nil {
			return err
		}
		var recent int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM tenancy.email_tokens WHERE user_id = $1 AND purpose = $2 AND created_at > now() - $3::interval`,
			u.ID, string(purpose), emailTokenWindow).Scan(&recent); err != nil {
			return err
		}
		if recent >= emailTokenBurst {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tenancy.email_tokens (token_hash, user_id, purpose, email, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			hash, u.ID, string(purpose), u.Email, expires); err != nil {
			return err
		}
		issued = true
		return mail.Enqueue(ctx, tx, msg)
	})
	return issued && err == nil, err
}

func tokenPrefix(p emailPurpose) string {
	if p == purposePasswordReset {
		return "rst_"
	}
	return "vfy_"
}

// emailTokenUser is the account a live token of purpose was mailed to, without using the token.
func (s *Store) emailTokenUser(ctx context.Context, token string, purpose emailPurpose) (user, error) {
	return emailTokenUser(ctx, s.pool, token, purpose, false)
}

func emailTokenUser(ctx context.Context, q querier, token string, purpose emailPurpose, lock bool) (user, error) {
	sql := `SELECT u.id FROM tenancy.email_tokens t JOIN tenancy.users u ON u.id = t.user_id
		WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL AND now() < t.expires_at
		  AND t.email = u.email AND NOT u.disabled`
	if lock {
		sql += ` FOR UPDATE OF t, u`
	}
	var id string
	err := q.QueryRow(ctx, sql, hashOf(token), string(purpose)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return user{}, errInvalidEmailToken
	}
	if err != nil {
		return user{}, err
	}
	u, found, err := userByID(ctx, q, id)
	if err == nil && !found {
		err = errInvalidEmailToken
	}
	return u, err
}

// useEmailToken spends a live token of purpose and runs apply for its account in the same
// transaction: the token works once, and only if apply succeeds. Every other token of the same
// purpose for the account is spent with it.
func (s *Store) useEmailToken(ctx context.Context, token string, purpose emailPurpose, apply func(tx pgx.Tx, u user) error) (user, error) {
	var u user
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if u, err = emailTokenUser(ctx, tx, token, purpose, true); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE tenancy.email_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL`,
			u.ID, string(purpose)); err != nil {
			return err
		}
		return apply(tx, u)
	})
	return u, err
}

// markEmailVerified records that u proved their address, in tx; it answers whether it was news.
func markEmailVerified(ctx context.Context, tx pgx.Tx, u user) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE tenancy.users SET email_verified_at = now(), updated_at = now() WHERE id = $1 AND email_verified_at IS NULL`, u.ID)
	return tag.RowsAffected() == 1, err
}
