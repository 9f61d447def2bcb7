package mail_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// run starts d until the test ends.
func run(t *testing.T, d *mail.Dispatcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func message(i int, to string) mail.Message {
	return mail.Message{Kind: mail.PasswordReset, To: to, Subject: fmt.Sprintf("Mail %d", i),
		Text: fmt.Sprintf("Open https://auth.example.com/reset?token=secret-%d\n", i), HTML: fmt.Sprintf("<p>Mail %d</p>", i)}
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Committed mail reaches the server once, from any number of dispatchers; rolled-back mail never
// leaves; what was sent keeps no body in the database.
func TestDispatcherDeliversCommittedMailOnce(t *testing.T) {
	testenv.SkipIfShort(t, "PostgreSQL and Mailpit")
	ctx := context.Background()
	_, pg := testenv.NewMigratedDatabase(t, "mail")
	pool := pg.Pool()
	mailpit := testenv.StartMailpit(t)
	server := mailpit.SMTPConfig()

	const n = 20
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for i := range n {
			if err := mail.Enqueue(ctx, tx, message(i, fmt.Sprintf("user%d@example.com", i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rolledBack := errors.New("roll back")
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := mail.Enqueue(ctx, tx, message(99, "never@example.com")); err != nil {
			return err
		}
		return rolledBack
	})
	if !errors.Is(err, rolledBack) {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	for range 2 {
		d, err := mail.NewDispatcher(pool, mail.SMTP{Config: server}, reg, testr.New(t), mail.DispatcherOptions{Batch: 3, PollInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		run(t, d)
	}
	waitFor(t, "every mail sent", func() (bool, error) {
		return count(t, pool, `SELECT count(*) FROM tenancy.mail_outbox WHERE sent_at IS NOT NULL`) == n, nil
	})
	msgs, err := mailpit.Messages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n {
		t.Fatalf("Mailpit holds %d messages, want %d: each mail exactly once", len(msgs), n)
	}
	for _, m := range msgs {
		if m.SentTo("never@example.com") {
			t.Fatal("a rolled-back mail was sent")
		}
	}
	detail, err := mailpit.Message(ctx, msgs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if detail.From.Address != "no-reply@tenancy.test" || !strings.Contains(detail.Text, "https://auth.example.com/reset?token=secret-") ||
		!strings.Contains(detail.HTML, "<p>Mail ") {
		t.Fatalf("the mail arrived wrong: %+v", detail)
	}
	if left := count(t, pool, `SELECT count(*) FROM tenancy.mail_outbox WHERE body_text IS NOT NULL OR body_html IS NOT NULL`); left != 0 {
		t.Fatalf("%d sent mails keep their bodies (one-time links) in the database", left)
	}
	if got := metricSum(t, reg, "tenancy_mail_sent_total"); got != n {
		t.Fatalf("tenancy_mail_sent_total = %v, want %d", got, n)
	}
}

// metricSum adds up every series of the metric name in reg.
func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return total
}

// A server that cannot be reached delays mail; after the last attempt it is given up, counted
// and logged, and its bodies are cleared.
func TestDispatcherRetriesThenGivesUp(t *testing.T) {
	testenv.SkipIfShort(t, "PostgreSQL")
	ctx := context.Background()
	_, pg := testenv.NewMigratedDatabase(t, "mail")
	pool := pg.Pool()
	// A port nobody listens on: connecting fails at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	server, err := mail.ParseSMTPURL(fmt.Sprintf("smtp://127.0.0.1:%d?starttls=none", closed), "Tenancy <no-reply@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	if err := mail.Enqueue(ctx, pool, message(1, "alice@example.com")); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	d, err := mail.NewDispatcher(pool, mail.SMTP{Config: server, Timeout: 2 * time.Second}, reg, testr.New(t),
		mail.DispatcherOptions{PollInterval: 50 * time.Millisecond, RetryDelay: 200 * time.Millisecond, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	run(t, d)
	waitFor(t, "a failed attempt recorded", func() (bool, error) {
		return count(t, pool, `SELECT count(*) FROM tenancy.mail_outbox WHERE attempts >= 1 AND last_error LIKE '%connecting to smtp://127.0.0.1:%' AND dead_at IS NULL`) == 1, nil
	})
	waitFor(t, "the mail given up after 3 attempts", func() (bool, error) {
		return count(t, pool, `SELECT count(*) FROM tenancy.mail_outbox WHERE attempts = 3 AND dead_at IS NOT NULL AND sent_at IS NULL
			AND body_text IS NULL AND body_html IS NULL AND last_error IS NOT NULL`) == 1, nil
	})
	failures, givenUp := metricSum(t, reg, "tenancy_mail_send_failures_total"), metricSum(t, reg, "tenancy_mail_given_up_total")
	if failures != 3 || givenUp != 1 {
		t.Fatalf("tenancy_mail_send_failures_total = %v, want 3; tenancy_mail_given_up_total = %v, want 1", failures, givenUp)
	}
}

// refusingSender refuses some recipients for good and takes the rest.
type refusingSender struct {
	mu   sync.Mutex
	sent []string
}

func (s *refusingSender) Send(_ context.Context, msgs []mail.Message) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	results := make([]error, len(msgs))
	for i, m := range msgs {
		if strings.HasPrefix(m.To, "bounce") {
			results[i] = &mail.SendError{Err: errors.New("550 mailbox unavailable"), Permanent: true}
			continue
		}
		s.sent = append(s.sent, m.To)
	}
	return results
}

// A mail the server refuses for good is given up at once; the others of its batch are sent.
func TestDispatcherGivesUpAPermanentRefusalAtOnce(t *testing.T) {
	testenv.SkipIfShort(t, "PostgreSQL")
	ctx := context.Background()
	_, pg := testenv.NewMigratedDatabase(t, "mail")
	pool := pg.Pool()
	for i, to := range []string{"bounce@example.com", "ok@example.com"} {
		if err := mail.Enqueue(ctx, pool, message(i, to)); err != nil {
			t.Fatal(err)
		}
	}
	sender := &refusingSender{}
	d, err := mail.NewDispatcher(pool, sender, prometheus.NewRegistry(), testr.New(t), mail.DispatcherOptions{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, d)
	waitFor(t, "both mails done", func() (bool, error) {
		return count(t, pool, `SELECT count(*) FROM tenancy.mail_outbox WHERE sent_at IS NOT NULL OR dead_at IS NOT NULL`) == 2, nil
	})
	if n := count(t, pool, `SELECT count(*) FROM tenancy.mail_outbox WHERE recipient = 'bounce@example.com' AND attempts = 1 AND dead_at IS NOT NULL
		AND last_error = '550 mailbox unavailable'`); n != 1 {
		t.Fatal("the refused mail is not given up after its one attempt")
	}
	sender.mu.Lock()
	defer sender.mu.Unlock()
	if len(sender.sent) != 1 || sender.sent[0] != "ok@example.com" {
		t.Fatalf("sent %v", sender.sent)
	}
}
