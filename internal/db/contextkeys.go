package db

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ContextKey is the schedule of one signing key, which the context key of the same id follows.
type ContextKey struct {
	KID string
	// RetiredAt is when the key stopped signing (nil while it may still sign).
	RetiredAt *time.Time
	// ExpiresAt is when tokens it signed are all expired (nil while it may still sign).
	ExpiresAt *time.Time
}

// SyncContextKeys makes tenancy.context_keys follow the signing keys: a context key (with a fresh
// random secret) for each signing key, retired and expired when its signing key is; context keys
// of no current signing key (the migration's first one, or keys of removed signing keys) retire
// now and expire after lifetime; expired ones are removed a day later.
func (p *Postgres) SyncContextKeys(ctx context.Context, keys []ContextKey, lifetime time.Duration) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		kids := make([]string, 0, len(keys))
		for _, k := range keys {
			kids = append(kids, k.KID)
			secret := make([]byte, 32)
			if _, err := rand.Read(secret); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `
				INSERT INTO tenancy.context_keys (kid, secret, retired_at, expires_at)
				VALUES ($1, $4, $2, $3)
				ON CONFLICT (kid) DO UPDATE SET retired_at = excluded.retired_at, expires_at = excluded.expires_at
				WHERE context_keys.retired_at IS DISTINCT FROM excluded.retired_at
				   OR context_keys.expires_at IS DISTINCT FROM excluded.expires_at`,
				k.KID, k.RetiredAt, k.ExpiresAt, secret); err != nil {
				return fmt.Errorf("context key %s: %w", k.KID, err)
			}
		}
		if _, err := tx.Exec(ctx, `
			UPDATE tenancy.context_keys
			SET retired_at = coalesce(retired_at, now()), expires_at = coalesce(expires_at, now() + make_interval(secs => $2))
			WHERE kid <> ALL ($1) AND (retired_at IS NULL OR expires_at IS NULL)`, kids, lifetime.Seconds()); err != nil {
			return fmt.Errorf("retiring context keys: %w", err)
		}
		_, err := tx.Exec(ctx, "DELETE FROM tenancy.context_keys WHERE kid <> ALL ($1) AND expires_at < now() - interval '1 day'", kids)
		return err
	})
	if err != nil {
		return fmt.Errorf("syncing the context keys: %w", err)
	}
	return nil
}
