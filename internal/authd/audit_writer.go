package authd

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/tenancy-dev/tenancy/internal/db"
)

// audit queues entries for the request's audit rows, written in batches (auditWriter). When the
// queue is full (the database has been slow for a while) the row is logged and dropped rather
// than stalling the request.
func (s *Server) audit(r *http.Request, entries ...auditEntry) {
	for _, e := range entries {
		e.RequestID = r.Header.Get("X-Request-Id")
		if !s.auditWriter.queue(e) {
			s.metrics.auditDropped.Inc()
			s.log.Error(errors.New("audit queue full"), "Dropping an audit row", "action", e.Action, "target", e.Target)
		}
	}
}

// auditStore is where an auditWriter writes: the Store.
type auditStore interface {
	audit(ctx context.Context, entries []auditEntry) error
}

// auditWriter writes audit rows in batches: one statement batch for whatever accumulated while
// the previous one was written, instead of a round trip per request.
type auditWriter struct {
	store   auditStore
	log     logr.Logger
	entries chan auditEntry
}

const (
	// auditQueueLength is how many rows requests may queue while the database is slow or away.
	auditQueueLength = 4096
	// auditBatchLength bounds the rows of one batch.
	auditBatchLength = 1000
	// auditShutdownGrace bounds how long a stopping authd keeps retrying the audit rows it holds.
	auditShutdownGrace = 30 * time.Second
)

func newAuditWriter(store auditStore, log logr.Logger) *auditWriter {
	return &auditWriter{store: store, log: log, entries: make(chan auditEntry, auditQueueLength)}
}

// queue adds e to the rows to write; it reports false, and drops e, when the queue is full.
func (a *auditWriter) queue(e auditEntry) bool {
	select {
	case a.entries <- e:
		return true
	default:
		return false
	}
}

// run writes until ctx ends, then writes what is left, retrying for up to auditShutdownGrace.
func (a *auditWriter) run(ctx context.Context) {
	for {
		var batch []auditEntry
		select {
		case e := <-a.entries:
			batch = append(batch, e)
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.Background(), auditShutdownGrace)
			defer cancel()
			for batch := a.drain(nil); len(batch) > 0; batch = a.drain(nil) {
				a.write(last, batch)
			}
			return
		}
		a.write(ctx, a.drain(batch))
	}
}

// drain adds what is queued, up to auditBatchLength entries.
func (a *auditWriter) drain(batch []auditEntry) []auditEntry {
	for len(batch) < auditBatchLength {
		select {
		case e := <-a.entries:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// write stores a batch. While the database is away it keeps retrying (until ctx ends), so an
// outage delays audit rows rather than losing them; requests meanwhile queue theirs, up to the
// queue's capacity. A batch the database refuses is written row by row, so that one bad row
// cannot lose the others; rows it cannot store are logged with their actions.
func (a *auditWriter) write(ctx context.Context, batch []auditEntry) {
	if len(batch) == 0 {
		return
	}
	var err error
	for wait := time.Second; ; wait = min(2*wait, 10*time.Second) {
		attempt, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = a.store.audit(attempt, batch)
		cancel()
		if err == nil || !db.IsUnavailable(err) || !sleep(ctx, wait) {
			break
		}
	}
	if err != nil && !db.IsUnavailable(err) && len(batch) > 1 {
		for _, e := range batch {
			a.write(ctx, []auditEntry{e})
		}
		return
	}
	if err != nil {
		actions := make([]string, 0, len(batch))
		for _, e := range batch {
			actions = append(actions, e.Action+" "+e.Target)
		}
		a.log.Error(err, "Writing the audit log; these rows are lost", "rows", actions)
	}
}

// sleep waits for d, or less when ctx ends first; it reports whether the whole time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
