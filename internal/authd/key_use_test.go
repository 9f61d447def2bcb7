package authd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

type fakeKeyUseStore struct {
	err     error
	flushed []map[string]time.Time
}

func (f *fakeKeyUseStore) touchAPIKeys(_ context.Context, used map[string]time.Time) error {
	f.flushed = append(f.flushed, used)
	return f.err
}

func TestKeyUseRecorderTakesTheLatestUseOfEachKeyOnce(t *testing.T) {
	k := newKeyUseRecorder(&fakeKeyUseStore{}, logr.Discard())
	start := time.Now()
	k.record("key-a")
	k.record("key-b")
	between := time.Now()
	k.record("key-a")
	used := k.take()
	if len(used) != 2 || used["key-b"].Before(start) || used["key-a"].Before(between) {
		t.Errorf("take() = %v: want both keys, key-a at its second use", used)
	}
	if again := k.take(); len(again) != 0 {
		t.Errorf("a second take() = %v: what was taken is forgotten", again)
	}
	k.record("key-c")
	if next := k.take(); len(next) != 1 || next["key-c"].IsZero() {
		t.Errorf("take() after a new use = %v", next)
	}
}

func TestKeyUseRecorderLosesNoUseToAConcurrentTake(t *testing.T) {
	k := newKeyUseRecorder(&fakeKeyUseStore{}, logr.Discard())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				k.record(fmt.Sprintf("key-%d-%d", g, i))
			}
		})
	}
	seen := map[string]bool{}
	takes := make(chan struct{})
	go func() {
		defer close(takes)
		for range 50 {
			for id := range k.take() {
				seen[id] = true
			}
		}
	}()
	wg.Wait()
	<-takes
	for id := range k.take() {
		seen[id] = true
	}
	if len(seen) != 8*200 {
		t.Errorf("%d of %d keys' uses were taken", len(seen), 8*200)
	}
}

func TestKeyUseRecorderFlushesWhatWasRecorded(t *testing.T) {
	store := &fakeKeyUseStore{}
	k := newKeyUseRecorder(store, logr.Discard())
	k.flush(context.Background())
	if len(store.flushed) != 0 {
		t.Fatal("a flush with nothing recorded writes")
	}
	k.record("key-a")
	k.flush(context.Background())
	k.flush(context.Background())
	if len(store.flushed) != 1 || len(store.flushed[0]) != 1 || store.flushed[0]["key-a"].IsZero() {
		t.Errorf("flushed %v: want key-a's use, once", store.flushed)
	}
}

func TestKeyUseRecorderLogsAFailedFlushWithoutRetrying(t *testing.T) {
	store := &fakeKeyUseStore{err: errors.New("database away")}
	var log logLines
	k := newKeyUseRecorder(store, log.logger())
	k.record("key-a")
	k.flush(context.Background())
	if got := log.String(); !strings.Contains(got, "Recording when API keys were last used") || !strings.Contains(got, "database away") {
		t.Errorf("the failure is not logged:\n%s", got)
	}
	k.flush(context.Background())
	if len(store.flushed) != 1 {
		t.Errorf("%d writes: a failed flush is not retried, the key's next use records it again", len(store.flushed))
	}
}
