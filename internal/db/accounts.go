package db

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/mail"
)

// AccountSuspension is the database's view of an AccountSuspension resource.
type AccountSuspension struct {
	UID    string
	Name   string
	Email  string
	Reason string
}

// SuspensionResult is what applying a suspension found and did.
type SuspensionResult struct {
	// UserID is the disabled account, "" when no account has the address yet.
	UserID string
	// SessionsEnded counts the refresh tokens this call revoked.
	SessionsEnded int64
}

// SuspendAccount records the suspension and disables the account with its address, ending every
// session. It is idempotent, and puts the flag back should someone clear it by hand.
func (p *Postgres) SuspendAccount(ctx context.Context, s AccountSuspension, actor Actor) (SuspensionResult, error) {
	if err := p.ensureMigrated(); err != nil {
		return SuspensionResult{}, err
	}
	var r SuspensionResult
	email := NormalizeEmail(s.Email)
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO tenancy.account_suspensions (uid, name, email, reason) VALUES ($1, $2, $3, $4)
			ON CONFLICT (uid) DO UPDATE SET reason = EXCLUDED.reason WHERE account_suspensions.reason <> EXCLUDED.reason`,
			s.UID, s.Name, email, s.Reason)
		if err != nil {
			return fmt.Errorf("recording the suspension: %w", err)
		}
		err = tx.QueryRow(ctx, `UPDATE tenancy.users SET disabled = true, updated_at = CASE WHEN disabled THEN updated_at ELSE now() END
			WHERE email = $1 RETURNING id::text`, email).Scan(&r.UserID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("disabling the account: %w", err)
		}
		if r.UserID != "" {
			ended, err := tx.Exec(ctx, `UPDATE tenancy.refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL`, r.UserID)
			if err != nil {
				return fmt.Errorf("ending the account's sessions: %w", err)
			}
			r.SessionsEnded = ended.RowsAffected()
		}
		if tag.RowsAffected() == 0 && r.SessionsEnded == 0 {
			return nil // already in place
		}
		return insertAudit(ctx, tx, actor, "account.suspended", "accountsuspension/"+s.Name, "",
			map[string]any{"email": email, "reason": s.Reason, "userID": r.UserID, "sessionsEnded": r.SessionsEnded})
	})
	if err != nil {
		return SuspensionResult{}, fmt.Errorf("suspending %s: %w", email, err)
	}
	return r, nil
}

// LiftSuspension forgets the suspension and enables the account again, unless another suspension
// names its address or the account is being deleted. It is idempotent.
func (p *Postgres) LiftSuspension(ctx context.Context, uid, name string, actor Actor) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var email string
		err := tx.QueryRow(ctx, `DELETE FROM tenancy.account_suspensions WHERE uid = $1 RETURNING email::text`, uid).Scan(&email)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		enabled, err := tx.Exec(ctx, `
			UPDATE tenancy.users u SET disabled = false, updated_at = now()
			WHERE u.email = $1 AND u.disabled AND u.deletion_requested_at IS NULL
			  AND NOT EXISTS (SELECT 1 FROM tenancy.account_suspensions s WHERE s.email = u.email)`, email)
		if err != nil {
			return fmt.Errorf("enabling the account: %w", err)
		}
		if actor, err = deletionActor(ctx, tx, uid, actor); err != nil {
			return err
		}
		return insertAudit(ctx, tx, actor, "account.suspension_lifted", "accountsuspension/"+name, "",
			map[string]any{"email": email, "enabled": enabled.RowsAffected() > 0})
	})
	if err != nil {
		return fmt.Errorf("lifting suspension %s: %w", name, err)
	}
	return nil
}

// AccountToErase is an account whose deletion was asked for.
type AccountToErase struct {
	UserID string
	Email  string
}

// AccountsToErase lists the accounts whose deletion was asked for, oldest request first.
func (p *Postgres) AccountsToErase(ctx context.Context, limit int) ([]AccountToErase, error) {
	if err := p.ensureMigrated(); err != nil {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, `
		SELECT id::text, email::text FROM tenancy.users
		WHERE deletion_requested_at IS NOT NULL ORDER BY deletion_requested_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("listing accounts to erase: %w", err)
	}
	accounts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AccountToErase, error) {
		var a AccountToErase
		err := row.Scan(&a.UserID, &a.Email)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing accounts to erase: %w", err)
	}
	return accounts, nil
}

// DeletedUserName is what the audit log calls a deleted account: a name that tells its rows
// apart from other people's without saying who it was.
func DeletedUserName(userID string) string { return "deleted-user-" + userID }

// ErasureNotice renders the mail that confirms an erasure to the address; nil when none is sent.
type ErasureNotice func(email string) (*mail.Message, error)

// EraseAccount erases an account whose deletion was asked for; the caller has seen that no
// Membership object names it any more, so a membership row left is an orphan and goes too. The
// user row goes (its sessions, factors and links with it), mail not yet sent to the address is
// cancelled, and the audit log keeps its rows with the address replaced by DeletedUserName and
// client addresses removed; the rows of its Membership objects name them membership/<that name>.
// notice, when not nil, is queued as the last mail to the address (a
// nil message: none). It reports false when the account was erased already.
func (p *Postgres) EraseAccount(ctx context.Context, userID string, actor Actor, notice ErasureNotice) (bool, error) {
	if err := p.ensureMigrated(); err != nil {
		return false, err
	}
	erased := false
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var email string
		err := tx.QueryRow(ctx, `SELECT email::text FROM tenancy.users WHERE id = $1 AND deletion_requested_at IS NOT NULL FOR UPDATE`, userID).
			Scan(&email)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // erased already
		}
		if err != nil {
			return err
		}
		orphans, err := tx.Exec(ctx, `DELETE FROM tenancy.memberships WHERE user_id = $1`, userID)
		if err != nil {
			return fmt.Errorf("deleting orphaned membership rows: %w", err)
		}
		pseudonym := DeletedUserName(userID)
		pattern := "(?i)" + regexp.QuoteMeta(email)
		// The person's Membership objects may be named after their address (the self-service
		// API does so): their rows, which carry the object's uid as request id, lose the name.
		if _, err := tx.Exec(ctx, `
			UPDATE tenancy.audit_log SET target = 'membership/' || $3
			WHERE target LIKE 'membership/%' AND request_id IN (
			    SELECT request_id FROM tenancy.audit_log
			    WHERE target LIKE 'membership/%' AND request_id <> '' AND (details->>'userID' = $1 OR details->>'user' ~ $2))`,
			userID, pattern, pseudonym); err != nil {
			return fmt.Errorf("pseudonymising the audit log's membership names: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE tenancy.audit_log SET
			    actor = regexp_replace(actor, $2, $3, 'g'),
			    target = regexp_replace(target, $2, $3, 'g'),
			    details = regexp_replace((details - 'client_address')::text, $2, $3, 'g')::jsonb
			WHERE actor_user_id = $1 OR actor ~ $2 OR target ~ $2 OR details::text ~ $2`,
			userID, pattern, pseudonym); err != nil {
			return fmt.Errorf("pseudonymising the audit log: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tenancy.mail_outbox WHERE lower(recipient) = $1 AND sent_at IS NULL AND dead_at IS NULL`, email); err != nil {
			return fmt.Errorf("cancelling mail: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE tenancy.mail_outbox SET recipient = $2 WHERE lower(recipient) = $1`, email, pseudonym); err != nil {
			return fmt.Errorf("forgetting sent mail: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tenancy.users WHERE id = $1`, userID); err != nil {
			return fmt.Errorf("deleting the user: %w", err)
		}
		if notice != nil {
			m, err := notice(email)
			if err != nil {
				return err
			}
			if m != nil {
				if err := mail.Enqueue(ctx, tx, *m); err != nil {
					return err
				}
			}
		}
		erased = true
		var details map[string]any
		if orphans.RowsAffected() > 0 {
			details = map[string]any{"orphanedMembershipRows": orphans.RowsAffected()}
		}
		return insertAudit(ctx, tx, actor, "account.erased", "user/"+pseudonym, "", details)
	})
	if err != nil {
		return false, fmt.Errorf("erasing account %s: %w", userID, err)
	}
	return erased, nil
}
