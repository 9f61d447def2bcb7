package authd

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	// errTOTPEnrolled refuses a second enrolment: turn the first off before.
	errTOTPEnrolled = errors.New("an authenticator is already enrolled")
	// errNoTOTPEnrolment is a confirmation without a started enrolment.
	errNoTOTPEnrolment = errors.New("no enrolment was started")
	// errWrongCode is a TOTP or recovery code that does not match, or was used.
	errWrongCode = errors.New("wrong code")
)

// hasTOTP reports whether the user has a confirmed authenticator.
func (s *Store) hasTOTP(ctx context.Context, userID string) (bool, error) {
	var enrolled bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenancy.totp_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL)`, userID).Scan(&enrolled)
	return enrolled, err
}

// startTOTP records secret as the user's enrolment to confirm, replacing an unconfirmed one.
func (s *Store) startTOTP(ctx context.Context, userID, secret string) error {
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO tenancy.totp_factors (user_id, secret) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, created_at = now(), last_used_step = NULL
		WHERE tenancy.totp_factors.confirmed_at IS NULL`, userID, secret)
	if err == nil && tag.RowsAffected() == 0 {
		err = errTOTPEnrolled
	}
	return err
}

// pendingTOTP is the secret of the user's enrolment to confirm.
func (s *Store) pendingTOTP(ctx context.Context, userID string) (string, error) {
	var secret string
	err := s.pool.QueryRow(ctx, `SELECT secret FROM tenancy.totp_factors WHERE user_id = $1 AND confirmed_at IS NULL`, userID).Scan(&secret)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errNoTOTPEnrolment
	}
	return secret, err
}

// confirmTOTP confirms the user's enrolment with a code of its authenticator and stores the
// hashes of new recovery codes in place of any old ones.
func (s *Store) confirmTOTP(ctx context.Context, userID, code string, recoveryCodes []string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var secret string
		var confirmed bool
		err := tx.QueryRow(ctx, `SELECT secret, confirmed_at IS NOT NULL FROM tenancy.totp_factors WHERE user_id = $1 FOR UPDATE`, userID).
			Scan(&secret, &confirmed)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return errNoTOTPEnrolment
		case err != nil:
			return err
		case confirmed:
			return errTOTPEnrolled
		}
		step, ok := matchTOTP(secret, code, time.Now(), nil)
		if !ok {
			return errWrongCode
		}
		if _, err := tx.Exec(ctx, `UPDATE tenancy.totp_factors SET confirmed_at = now(), last_used_step = $2 WHERE user_id = $1`, userID, step); err != nil {
			return err
		}
		return replaceRecoveryCodes(ctx, tx, userID, recoveryCodes)
	})
}

func replaceRecoveryCodes(ctx context.Context, tx pgx.Tx, userID string, codes []string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM tenancy.recovery_codes WHERE user_id = $1`, userID); err != nil {
		return err
	}
	hashes := make([][]byte, len(codes))
	for i, c := range codes {
		hashes[i] = hashOf(normalizeRecoveryCode(c))
	}
	_, err := tx.Exec(ctx, `INSERT INTO tenancy.recovery_codes (user_id, code_hash) SELECT $1, unnest($2::bytea[])`, userID, hashes)
	return err
}

// useSecondFactor spends a TOTP code (its time step, and every earlier one, then never works
// again) or a recovery code (once) of the user's confirmed authenticator; errWrongCode otherwise.
// It answers how many recovery codes are left.
func (s *Store) useSecondFactor(ctx context.Context, userID, code, recoveryCode string) (left int, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var secret string
		var lastStep *int64
		err := tx.QueryRow(ctx, `SELECT secret, last_used_step FROM tenancy.totp_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL FOR UPDATE`, userID).
			Scan(&secret, &lastStep)
		if errors.Is(err, pgx.ErrNoRows) {
			return errWrongCode
		}
		if err != nil {
			return err
		}
		if recoveryCode != "" {
			tag, err := tx.Exec(ctx, `UPDATE tenancy.recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL`,
				userID, hashOf(normalizeRecoveryCode(recoveryCode)))
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return errWrongCode
			}
		} else {
			step, ok := matchTOTP(secret, code, time.Now(), lastStep)
			if !ok {
				return errWrongCode
			}
			if _, err := tx.Exec(ctx, `UPDATE tenancy.totp_factors SET last_used_step = $2 WHERE user_id = $1`, userID, step); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM tenancy.recovery_codes WHERE user_id = $1 AND used_at IS NULL`, userID).Scan(&left)
	})
	return left, err
}

// removeTOTP deletes the user's authenticator and recovery codes.
func (s *Store) removeTOTP(ctx context.Context, userID string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM tenancy.totp_factors WHERE user_id = $1`, userID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM tenancy.recovery_codes WHERE user_id = $1`, userID)
		return err
	})
}

// loginChallengeTTL is how long the second step of a web login may wait; loginChallengeTries
// codes it may try.
const (
	loginChallengeTTL   = 5 * time.Minute
	loginChallengeTries = 5
)

// newLoginChallenge makes the ticket of a web login whose password was right, and forgets
// expired ones.
func (s *Store) newLoginChallenge(ctx context.Context, userID string) (string, error) {
	ticket, hash, err := newOpaqueToken("lgn_")
	if err != nil {
		return "", err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM tenancy.login_challenges WHERE expires_at < now()`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO tenancy.login_challenges (token_hash, user_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))`,
			hash, userID, loginChallengeTTL.Seconds())
		return err
	})
	return ticket, err
}

// errNoLoginChallenge is a ticket that is unknown, used, expired or out of tries.
var errNoLoginChallenge = errors.New("the login expired; enter your password again")

// takeLoginChallenge counts a try of the ticket and answers its user; done(true) then ends the
// ticket, done(false) leaves it for the next try.
func (s *Store) takeLoginChallenge(ctx context.Context, ticket string) (user, func(ok bool), error) {
	var userID string
	err := s.pool.QueryRow(ctx, `
		UPDATE tenancy.login_challenges SET attempts = attempts + 1
		WHERE token_hash = $1 AND expires_at > now() AND attempts < $2
		RETURNING user_id`, hashOf(ticket), loginChallengeTries).Scan(&userID)
	if errors.Is(err, pgx.ErrNoRows) {
		return user{}, nil, errNoLoginChallenge
	}
	if err != nil {
		return user{}, nil, err
	}
	u, found, err := s.userByID(ctx, userID)
	if err == nil && (!found || u.Disabled) {
		err = errNoLoginChallenge
	}
	done := func(ok bool) {
		if ok {
			_, _ = s.pool.Exec(context.WithoutCancel(ctx), `DELETE FROM tenancy.login_challenges WHERE token_hash = $1`, hashOf(ticket))
		}
	}
	return u, done, err
}
