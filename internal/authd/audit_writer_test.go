package authd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenancy-dev/tenancy/internal/db"
)

var (
	// errDatabaseAway is what the database answers while it cannot take connections.
	errDatabaseAway = &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}
	// errBadRow is the database refusing a row (here: an untranslatable character).
	errBadRow = &pgconn.PgError{Code: "22P05", Message: "unsupported Unicode escape sequence"}
)

// fakeAuditStore records the batches an auditWriter hands it; answer decides how each call
// ends (nil stores the batch).
type fakeAuditStore struct {
	answer func(call int, batch []auditEntry) error

	mu      sync.Mutex
	batches [][]string // the actions of every batch it was given
	stored  []string   // the actions of the rows it stored
}

func (f *fakeAuditStore) audit(_ context.Context, batch []auditEntry) error {
	actions := make([]string, 0, len(batch))
	for _, e := range batch {
		actions = append(actions, e.Action)
	}
	f.mu.Lock()
	call := len(f.batches)
	f.batches = append(f.batches, actions)
	f.mu.Unlock()
	var err error
	if f.answer != nil {
		err = f.answer(call, batch)
	}
	if err == nil {
		f.mu.Lock()
		f.stored = append(f.stored, actions...)
		f.mu.Unlock()
	}
	return err
}

func (f *fakeAuditStore) results() (batches [][]string, stored []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches), slices.Clone(f.stored)
}

// logLines is a logger that keeps what it logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, args)
		l.mu.Unlock()
	}, funcr.Options{})
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func entries(actions ...string) []auditEntry {
	list := make([]auditEntry, 0, len(actions))
	for _, a := range actions {
		list = append(list, auditEntry{Action: a, Target: "user/alice"})
	}
	return list
}

// runWriter runs a until the returned stop is called; stop returns once run has returned.
func runWriter(a *auditWriter) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func eventually(t *testing.T, what string, condition func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !condition(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func TestFakeAuditStoreErrorsAreWhatTheWriterTellsApart(t *testing.T) {
	if !db.IsUnavailable(errDatabaseAway) || db.IsUnavailable(errBadRow) {
		t.Fatal("errDatabaseAway must count as unavailable, errBadRow as refused")
	}
}

func TestAuditWriterWritesWhatAccumulatedInOneBatch(t *testing.T) {
	store := &fakeAuditStore{}
	a := newAuditWriter(store, logr.Discard())
	var want []string
	for i := range auditBatchLength + 1 {
		want = append(want, fmt.Sprintf("action-%d", i))
		if !a.queue(entries(want[i])[0]) {
			t.Fatal("the queue refused a row below its capacity")
		}
	}
	stop := runWriter(a)
	defer stop()
	eventually(t, "every row is stored", func() bool { _, stored := store.results(); return len(stored) == len(want) })
	batches, stored := store.results()
	if diff := cmp.Diff(want, stored); diff != "" {
		t.Errorf("rows stored out of order (-want +got):\n%s", diff)
	}
	if len(batches) != 2 || len(batches[0]) != auditBatchLength || len(batches[1]) != 1 {
		t.Errorf("rows queued before the writer ran went in batches of %d: want one full batch and the rest", batchLengths(batches))
	}
}

func batchLengths(batches [][]string) []int {
	var lengths []int
	for _, b := range batches {
		lengths = append(lengths, len(b))
	}
	return lengths
}

func TestAuditWriterRetriesWhileTheDatabaseIsUnavailable(t *testing.T) {
	store := &fakeAuditStore{answer: func(call int, _ []auditEntry) error {
		if call == 0 {
			return errDatabaseAway
		}
		return nil
	}}
	var log logLines
	a := newAuditWriter(store, log.logger())
	a.write(context.Background(), entries("login.failed", "login.succeeded"))
	batches, stored := store.results()
	want := []string{"login.failed", "login.succeeded"}
	if diff := cmp.Diff([][]string{want, want}, batches); diff != "" {
		t.Errorf("the whole batch is tried again once the database is back (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, stored); diff != "" {
		t.Errorf("stored (-want +got):\n%s", diff)
	}
	if log.String() != "" {
		t.Errorf("a delayed batch is not an error:\n%s", log.String())
	}
}

func TestAuditWriterLogsTheRowsItCannotWriteBeforeItStops(t *testing.T) {
	store := &fakeAuditStore{answer: func(int, []auditEntry) error { return errDatabaseAway }}
	var log logLines
	a := newAuditWriter(store, log.logger())
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	a.write(stopped, entries("password.changed"))
	if batches, _ := store.results(); len(batches) != 1 {
		t.Errorf("a stopped writer tries once and gives up: %d attempts", len(batches))
	}
	if got := log.String(); !strings.Contains(got, "these rows are lost") || !strings.Contains(got, "password.changed user/alice") {
		t.Errorf("the lost row is not logged with its action and target:\n%s", got)
	}
}

func TestAuditWriterWritesARefusedBatchRowByRow(t *testing.T) {
	store := &fakeAuditStore{answer: func(_ int, batch []auditEntry) error {
		if slices.ContainsFunc(batch, func(e auditEntry) bool { return e.Action == "bad" }) {
			return errBadRow
		}
		return nil
	}}
	var log logLines
	a := newAuditWriter(store, log.logger())
	a.write(context.Background(), entries("first", "bad", "last"))
	batches, stored := store.results()
	if diff := cmp.Diff([][]string{{"first", "bad", "last"}, {"first"}, {"bad"}, {"last"}}, batches); diff != "" {
		t.Errorf("a refused batch is written again row by row (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"first", "last"}, stored); diff != "" {
		t.Errorf("one bad row loses the others (-want +got):\n%s", diff)
	}
	if got := log.String(); strings.Count(got, "these rows are lost") != 1 || !strings.Contains(got, `"bad user/alice"`) ||
		strings.Contains(got, "first") || strings.Contains(got, "last") {
		t.Errorf("only the bad row is logged as lost:\n%s", got)
	}
}

func TestAuditWriterWritesWhatIsQueuedWhenItStops(t *testing.T) {
	// Once the first batch is written, run sees both the stop and the queued rows; it picks
	// either first, so the stop is tried a number of times.
	for round := range 20 {
		release := make(chan struct{})
		store := &fakeAuditStore{answer: func(call int, _ []auditEntry) error {
			if call == 0 {
				<-release
			}
			return nil
		}}
		a := newAuditWriter(store, logr.Discard())
		ctx, stop := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() { a.run(ctx); close(stopped) }()
		a.queue(entries("first")[0])
		eventually(t, "the first batch is being written", func() bool { batches, _ := store.results(); return len(batches) == 1 })
		for _, e := range entries("second", "third") {
			a.queue(e)
		}
		stop()
		close(release)
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Fatal("the writer did not stop")
		}
		if _, stored := store.results(); !cmp.Equal([]string{"first", "second", "third"}, stored) {
			t.Fatalf("round %d: stored %v: rows queued before the stop are written before run returns", round, stored)
		}
	}
}

func TestAuditStampsTheRequestAndDropsRowsWhenTheQueueIsFull(t *testing.T) {
	var log logLines
	s := &Server{auditWriter: newAuditWriter(&fakeAuditStore{}, logr.Discard()), metrics: newMetrics(), log: log.logger()}
	r := httptest.NewRequest(http.MethodPost, "/auth/login", nil)
	r.Header.Set("X-Request-Id", "request-7")
	for range auditQueueLength {
		s.audit(r, auditEntry{Action: "login.failed", Target: "user/alice"})
	}
	if log.String() != "" {
		t.Fatalf("a row was dropped below the queue's capacity:\n%s", log.String())
	}
	s.audit(r, auditEntry{Action: "login.succeeded", Target: "user/bob"})
	if got := log.String(); !strings.Contains(got, "Dropping an audit row") || !strings.Contains(got, "login.succeeded") {
		t.Errorf("the dropped row is not logged:\n%s", got)
	}
	if first := <-s.auditWriter.entries; first.RequestID != "request-7" {
		t.Errorf("RequestID = %q, want the request's X-Request-Id", first.RequestID)
	}
	metrics := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(metrics, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(metrics.Body)
	if !strings.Contains(string(body), "\ntenancy_authd_audit_rows_dropped_total 1\n") {
		t.Error("the dropped row is not counted in tenancy_authd_audit_rows_dropped_total")
	}
}
