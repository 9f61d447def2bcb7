package db

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Postgres is the manager's handle on the database: a lazily connecting pool, which is usable once
// the schema migrations have run.
type Postgres struct {
	pool     *pgxpool.Pool
	migrated chan struct{}
	once     sync.Once
	log      logr.Logger
}

// Connect prepares a pool for databaseURL (a libpq URL or DSN). It does not wait for the database:
// a manager starts, serves its probes and reports DatabaseUnavailable until the database answers.
func Connect(ctx context.Context, databaseURL string, log logr.Logger) (*Postgres, error) {
	cfg, err := PoolConfig(databaseURL, "tenancy-manager", 5*time.Second)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the database pool: %w", err)
	}
	return &Postgres{pool: pool, migrated: make(chan struct{}), log: log}, nil
}

// PoolConfig parses databaseURL (a libpq URL or DSN) for a pool that names itself
// applicationName and gives up connecting after connectTimeout, unless the URL says otherwise.
func PoolConfig(databaseURL, applicationName string, connectTimeout time.Duration) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing the database URL: %w", err) // pgx redacts the password
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > connectTimeout {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = applicationName
	}
	return cfg, nil
}

// Pool is the underlying connection pool.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// Close closes the pool.
func (p *Postgres) Close() { p.pool.Close() }

// Start applies the migrations, retrying with backoff while the database is unreachable, and
// returns once they are applied. It is a manager Runnable that every replica runs.
func (p *Postgres) Start(ctx context.Context) error {
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 30 * time.Second}
	return wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		applied, err := Migrate(ctx, p.pool)
		if err != nil {
			if IsUnavailable(err) && ctx.Err() == nil {
				p.log.Info("Database unavailable, retrying migrations", "error", err.Error())
				return false, nil
			}
			return false, err
		}
		p.log.Info("Database schema migrated", "applied", applied)
		p.once.Do(func() { close(p.migrated) })
		return true, nil
	})
}

// NeedLeaderElection is false: every replica migrates (the advisory lock serializes them) and
// must know the schema is current before it answers.
func (p *Postgres) NeedLeaderElection() bool { return false }

// Migrated reports whether the migrations have run in this process.
func (p *Postgres) Migrated() bool {
	select {
	case <-p.migrated:
		return true
	default:
		return false
	}
}

// MigratedCheck is a healthz checker: ready once the migrations have run in this process. The
// manager uses it rather than ReadyCheck so that its webhooks stay reachable while the database
// is down (only decisions that need the database fail).
func (p *Postgres) MigratedCheck(*http.Request) error { return p.ensureMigrated() }

// ReadyCheck is a healthz checker: ready when migrated and the database answers a ping.
func (p *Postgres) ReadyCheck(req *http.Request) error {
	if !p.Migrated() {
		return ErrNotMigrated
	}
	ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
	defer cancel()
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	return nil
}

func (p *Postgres) ensureMigrated() error {
	if !p.Migrated() {
		return ErrNotMigrated
	}
	return nil
}
