package db

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the advisory lock that serializes migrations within one database.
const migrationLockKey int64 = 0x74656e616e6379 // "tenancy"

// Migration is one embedded, versioned SQL file.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("reading embedded migrations: %w", err)
	}
	var migrations []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q does not match NNNN_name.sql", e.Name())
		}
		body, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		version, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(body)
		migrations = append(migrations, Migration{Version: version, Name: m[2], SQL: string(body), Checksum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(migrations, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(migrations); i++ {
		if migrations[i].Version == migrations[i-1].Version {
			return nil, fmt.Errorf("two migrations have version %04d", migrations[i].Version)
		}
	}
	return migrations, nil
}

// Migrate applies the pending migrations, each in its own transaction, under an advisory lock so
// that several managers starting at once apply each migration exactly once. It returns how many
// it applied, and refuses to run when an applied migration's file has changed since.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	migrations, err := Migrations()
	if err != nil {
		return 0, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("acquiring a connection for migrations: %w", err)
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return 0, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer func() {
		// A connection that lost its session has lost the lock with it; otherwise give it back.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	if _, err := conn.Exec(ctx, `
		CREATE SCHEMA IF NOT EXISTS tenancy;
		CREATE TABLE IF NOT EXISTS tenancy.schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			checksum   text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
		return 0, fmt.Errorf("creating tenancy.schema_migrations: %w", err)
	}

	applied := map[int]string{}
	rows, err := conn.Query(ctx, "SELECT version, checksum FROM tenancy.schema_migrations")
	if err != nil {
		return 0, fmt.Errorf("reading applied migrations: %w", err)
	}
	for rows.Next() {
		var version int
		var checksum string
		if err := rows.Scan(&version, &checksum); err != nil {
			return 0, fmt.Errorf("reading applied migrations: %w", err)
		}
		applied[version] = checksum
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("reading applied migrations: %w", err)
	}

	count := 0
	for _, m := range migrations {
		if checksum, ok := applied[m.Version]; ok {
			if checksum != m.Checksum {
				return count, fmt.Errorf("migration %04d_%s was changed after it was applied (checksum %s, applied %s)",
					m.Version, m.Name, m.Checksum[:12], checksum[:min(12, len(checksum))])
			}
			continue
		}
		if err := applyWithRetry(ctx, conn.Conn(), m); err != nil {
			return count, err
		}
		count++
	}
	return count, nil
}

// applyWithRetry retries a migration that lost a race on a server-wide object (a role) with a
// migration of another database: advisory locks cannot serialize those.
func applyWithRetry(ctx context.Context, conn *pgx.Conn, m Migration) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = apply(ctx, conn, m); err == nil || !isServerWideRace(err) {
			return err
		}
	}
	return err
}

func apply(ctx context.Context, conn *pgx.Conn, m Migration) error {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Extensions that already existed may live in another schema: their types and functions
		// must resolve wherever they are.
		if _, err := tx.Exec(ctx, `
			SELECT set_config('search_path', 'tenancy, public' || coalesce(', ' || string_agg(quote_ident(n.nspname), ', '), ''), true)
			FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
			WHERE e.extname IN ('pgcrypto', 'citext') AND n.nspname NOT IN ('tenancy', 'public')`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO tenancy.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
			m.Version, m.Name, m.Checksum)
		return err
	})
	if err != nil {
		return fmt.Errorf("applying migration %04d_%s: %w", m.Version, m.Name, err)
	}
	return nil
}

func isServerWideRace(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "42710", "23505": // duplicate_object, unique_violation on a catalog
		return true
	case "XX000": // "tuple concurrently updated" on a shared catalog
		return pgErr.Message == "tuple concurrently updated"
	}
	return false
}
