package authd

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// keyUseStore is where a keyUseRecorder writes: the Store.
type keyUseStore interface {
	touchAPIKeys(ctx context.Context, used map[string]time.Time) error
}

// keyUseRecorder remembers when API keys were used, so that last_used_at costs one batched
// UPDATE every ten seconds (Server.Run flushes it) rather than a write per token.
type keyUseRecorder struct {
	store keyUseStore
	log   logr.Logger

	mu   sync.Mutex
	used map[string]time.Time // by the key's row id
}

func newKeyUseRecorder(store keyUseStore, log logr.Logger) *keyUseRecorder {
	return &keyUseRecorder{store: store, log: log, used: map[string]time.Time{}}
}

// record notes that the key with row id was used now.
func (k *keyUseRecorder) record(id string) {
	k.mu.Lock()
	k.used[id] = time.Now()
	k.mu.Unlock()
}

// take returns the uses recorded since the last take, the latest of each key, and forgets them.
func (k *keyUseRecorder) take() map[string]time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	used := k.used
	k.used = map[string]time.Time{}
	return used
}

// flush writes the uses recorded since the last flush. Uses it fails to write are logged and
// not retried: last_used_at is a hint, and the key's next use records it again.
func (k *keyUseRecorder) flush(ctx context.Context) {
	if used := k.take(); len(used) > 0 {
		if err := k.store.touchAPIKeys(ctx, used); err != nil {
			k.log.Error(err, "Recording when API keys were last used")
		}
	}
}
