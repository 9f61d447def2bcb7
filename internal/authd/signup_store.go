package authd

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// errEmailTaken is a signup for an email that has an account.
var errEmailTaken = errors.New("email taken")

// createUser creates an account with a password, or fails with errEmailTaken.
func (s *Store) createUser(ctx context.Context, email, hash string) (user, error) {
	u := user{Email: email, PasswordHash: &hash}
	err := s.pool.QueryRow(ctx, `
		INSERT INTO tenancy.users (email, password_hash, password_changed_at) VALUES ($1, $2, now())
		ON CONFLICT (email) DO NOTHING RETURNING id`, email, hash).Scan(&u.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, errEmailTaken
	}
	return u, err
}

// activateOwner gives the user the signup's password and makes their Owner membership Active,
// voiding the invitation the Membership controller sent meanwhile. The password is set only where
// there is none, in the statement that finds the user: an account that got a password since the
// signup began (an invitation accepted meanwhile) is somebody else's, and errEmailTaken.
func (s *Store) activateOwner(ctx context.Context, email, hash, membershipUID string) (user, error) {
	u := user{Email: email, PasswordHash: &hash}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			UPDATE tenancy.users SET password_hash = $2, password_changed_at = now(), updated_at = now()
			WHERE email = $1 AND password_hash IS NULL RETURNING id`, email, hash).Scan(&u.ID)
		if errors.Is(err, pgx.ErrNoRows) {
			return errEmailTaken
		}
		if err != nil {
			return fmt.Errorf("setting the password: %w", err)
		}
		var membershipID string
		if err := tx.QueryRow(ctx, `UPDATE tenancy.memberships SET state = 'Active', updated_at = now() WHERE uid = $1 RETURNING id`,
			membershipUID).Scan(&membershipID); err != nil {
			return fmt.Errorf("activating the membership: %w", err)
		}
		_, err = tx.Exec(ctx, `UPDATE tenancy.invitations SET used_at = now() WHERE membership_id = $1 AND used_at IS NULL`, membershipID)
		return err
	})
	return u, err
}

// deleteUnusedUser removes a user row that has neither a password nor a membership.
func (s *Store) deleteUnusedUser(ctx context.Context, email string) error {
	_, err := s.pool.Exec(ctx, `
		DELETE FROM tenancy.users u WHERE u.email = $1 AND u.password_hash IS NULL
		AND NOT EXISTS (SELECT 1 FROM tenancy.memberships m WHERE m.user_id = u.id)`, email)
	return err
}
