package mail

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Execer is a pool or a transaction: Enqueue writes in the caller's transaction, so the mail
// exists exactly when what it tells of was committed.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Enqueue puts m in the outbox.
func Enqueue(ctx context.Context, q Execer, m Message) error {
	_, err := q.Exec(ctx, `INSERT INTO tenancy.mail_outbox (kind, recipient, subject, body_text, body_html) VALUES ($1, $2, $3, $4, $5)`,
		string(m.Kind), m.To, m.Subject, m.Text, m.HTML)
	if err != nil {
		return fmt.Errorf("queueing %s mail: %w", m.Kind, err)
	}
	return nil
}

// DispatcherOptions tune a Dispatcher; zero values take the defaults.
type DispatcherOptions struct {
	// PollInterval is how often the outbox is read when nothing pokes the dispatcher (2 s).
	PollInterval time.Duration
	// Batch is how many mails one claim takes (20).
	Batch int
	// Lease is how long a claimed mail belongs to its dispatcher (2 min).
	Lease time.Duration
	// RetryDelay is the wait after the first failure; it doubles with each further one (30 s),
	// up to MaxRetryDelay (1 h).
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// MaxAttempts is how many times a mail is tried before it is given up (8: about 1 h of retries).
	MaxAttempts int
	// KeepDone is how long sent and given-up mails stay in the outbox, bodies cleared (7 days).
	KeepDone time.Duration
}

func (o DispatcherOptions) withDefaults() DispatcherOptions {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.PollInterval, 2*time.Second)
	set(&o.Lease, 2*time.Minute)
	set(&o.RetryDelay, 30*time.Second)
	set(&o.MaxRetryDelay, time.Hour)
	set(&o.KeepDone, 7*24*time.Hour)
	if o.Batch <= 0 {
		o.Batch = 20
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	return o
}

// Dispatcher delivers the outbox. Any number may run, in any process: each claims mails with
// FOR UPDATE SKIP LOCKED and a lease, so a mail is sent by one of them, and a dispatcher that
// died holding a lease only delays its mails until the lease ends.
type Dispatcher struct {
	pool    *pgxpool.Pool
	sender  Sender
	log     logr.Logger
	opts    DispatcherOptions
	poke    chan struct{}
	metrics dispatcherMetrics
	// ready, when set, holds the dispatcher back until it answers true (the schema is migrated).
	ready func() bool
}

type dispatcherMetrics struct {
	sent, failures, dead *prometheus.CounterVec
	due                  prometheus.Gauge
}

// NewDispatcher delivers pool's outbox through sender, and registers its metrics with reg.
func NewDispatcher(pool *pgxpool.Pool, sender Sender, reg prometheus.Registerer, log logr.Logger, opts DispatcherOptions) (*Dispatcher, error) {
	var m dispatcherMetrics
	var errs [4]error
	m.sent, errs[0] = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenancy_mail_sent_total", Help: "Mails the SMTP server accepted, by kind.",
	}, []string{"kind"}))
	m.failures, errs[1] = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenancy_mail_send_failures_total", Help: "Failed attempts to send a mail, by kind; most are retried.",
	}, []string{"kind"}))
	m.dead, errs[2] = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenancy_mail_given_up_total", Help: "Mails given up, by kind: refused for good by the server, or every attempt failed.",
	}, []string{"kind"}))
	m.due, errs[3] = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tenancy_mail_outbox_pending", Help: "Mails in the outbox waiting to be sent or retried.",
	}))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return &Dispatcher{pool: pool, sender: sender, log: log, opts: opts.withDefaults(), poke: make(chan struct{}, 1), metrics: m}, nil
}

// register registers c, or answers the collector already registered under its name: a process
// that makes a second dispatcher (a test's restarted manager) shares the first one's metrics.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("registering the mail metrics: %w", err)
	}
	return c, nil
}

// Poke makes the dispatcher read the outbox now: a mail was just committed.
func (d *Dispatcher) Poke() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// WaitFor holds the dispatcher back until ready answers true: in the manager, until the schema
// that has the outbox is migrated.
func (d *Dispatcher) WaitFor(ready func() bool) { d.ready = ready }

// Start delivers until ctx ends (a controller-runtime Runnable).
func (d *Dispatcher) Start(ctx context.Context) error {
	ticker := time.NewTicker(d.opts.PollInterval)
	defer ticker.Stop()
	for d.ready != nil && !d.ready() {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
	lastPrune := time.Time{}
	for {
		for {
			n, err := d.deliverBatch(ctx)
			if err != nil && ctx.Err() == nil {
				d.log.Error(err, "Reading the mail outbox failed")
			}
			if err != nil || n < d.opts.Batch {
				break
			}
		}
		if time.Since(lastPrune) > time.Hour {
			if err := d.prune(ctx); err != nil && ctx.Err() == nil {
				d.log.Error(err, "Pruning the mail outbox failed")
			}
			lastPrune = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-d.poke:
		}
	}
}

// NeedLeaderElection is false: every replica may deliver.
func (d *Dispatcher) NeedLeaderElection() bool { return false }

type claimed struct {
	id       int64
	attempts int
	msg      Message
}

// deliverBatch claims due mails, sends them and records each result; it answers how many it claimed.
func (d *Dispatcher) deliverBatch(ctx context.Context) (int, error) {
	rows, err := d.pool.Query(ctx, `
		UPDATE tenancy.mail_outbox o SET attempts = attempts + 1, leased_until = now() + $2::interval
		WHERE id IN (
			SELECT id FROM tenancy.mail_outbox
			WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= now() AND (leased_until IS NULL OR leased_until < now())
			ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING id, attempts, kind, recipient, subject, body_text, coalesce(body_html, '')`, d.opts.Batch, d.opts.Lease)
	if err != nil {
		return 0, err
	}
	batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (claimed, error) {
		var c claimed
		var kind string
		err := row.Scan(&c.id, &c.attempts, &kind, &c.msg.To, &c.msg.Subject, &c.msg.Text, &c.msg.HTML)
		c.msg.Kind = Kind(kind)
		return c, err
	})
	if err != nil {
		return 0, err
	}
	if len(batch) > 0 {
		msgs := make([]Message, len(batch))
		for i, c := range batch {
			msgs[i] = c.msg
		}
		results := d.sender.Send(ctx, msgs)
		for i, c := range batch {
			if err := d.record(ctx, c, results[i]); err != nil {
				return len(batch), err
			}
		}
	}
	var due float64
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM tenancy.mail_outbox WHERE sent_at IS NULL AND dead_at IS NULL`).Scan(&due); err != nil {
		return len(batch), err
	}
	d.metrics.due.Set(due)
	return len(batch), nil
}

// record writes one mail's result. The bodies go once the mail is sent or given up: they hold
// one-time links that nobody needs to read again from the database.
func (d *Dispatcher) record(ctx context.Context, c claimed, sendErr error) error {
	// A mail the server took must be recorded even when the dispatcher is stopping, or it
	// would be sent again once its lease ends.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	kind := string(c.msg.Kind)
	if sendErr == nil {
		d.metrics.sent.WithLabelValues(kind).Inc()
		d.log.V(1).Info("Mail sent", "kind", kind, "id", c.id)
		_, err := d.pool.Exec(ctx, `UPDATE tenancy.mail_outbox SET sent_at = now(), leased_until = NULL, last_error = NULL, body_text = NULL, body_html = NULL WHERE id = $1`, c.id)
		return err
	}
	d.metrics.failures.WithLabelValues(kind).Inc()
	var se *SendError
	permanent := errors.As(sendErr, &se) && se.Permanent
	if permanent || c.attempts >= d.opts.MaxAttempts {
		d.metrics.dead.WithLabelValues(kind).Inc()
		d.log.Error(sendErr, "Mail given up", "kind", kind, "id", c.id, "attempts", c.attempts, "refusedForGood", permanent)
		_, err := d.pool.Exec(ctx, `UPDATE tenancy.mail_outbox SET dead_at = now(), leased_until = NULL, last_error = $2, body_text = NULL, body_html = NULL WHERE id = $1`,
			c.id, truncate(sendErr.Error(), 1000))
		return err
	}
	delay := d.retryDelay(c.attempts)
	d.log.Info("Mail not sent; will retry", "kind", kind, "id", c.id, "attempt", c.attempts, "retryIn", delay.String(), "error", sendErr.Error())
	_, err := d.pool.Exec(ctx, `UPDATE tenancy.mail_outbox SET next_attempt_at = now() + $2::interval, leased_until = NULL, last_error = $3 WHERE id = $1`,
		c.id, delay, truncate(sendErr.Error(), 1000))
	return err
}

// retryDelay is RetryDelay doubled for each failure after the first, at most MaxRetryDelay.
func (d *Dispatcher) retryDelay(attempts int) time.Duration {
	delay := d.opts.RetryDelay
	for i := 1; i < attempts && delay < d.opts.MaxRetryDelay; i++ {
		delay *= 2
	}
	return min(delay, d.opts.MaxRetryDelay)
}

func (d *Dispatcher) prune(ctx context.Context) error {
	_, err := d.pool.Exec(ctx, `DELETE FROM tenancy.mail_outbox WHERE (sent_at IS NOT NULL OR dead_at IS NOT NULL) AND created_at < now() - $1::interval`, d.opts.KeepDone)
	return err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
