package authd

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// throttle limits attempts per key (an account, a client address): a burst, then one per
// interval. Keys idle long enough to have refilled are forgotten.
type throttle struct {
	every time.Duration
	burst int

	mu       sync.Mutex
	limiters map[string]*throttled
}

type throttled struct {
	limiter *rate.Limiter
	last    time.Time
}

func newThrottle(every time.Duration, burst int) *throttle {
	return &throttle{every: every, burst: burst, limiters: map[string]*throttled{}}
}

// allow takes one attempt for key; when none is left it returns how long to wait.
func (t *throttle) allow(key string) (ok bool, retryAfter time.Duration) {
	now := time.Now()
	t.mu.Lock()
	l := t.limiters[key]
	if l == nil {
		l = &throttled{limiter: rate.NewLimiter(rate.Every(t.every), t.burst)}
		t.limiters[key] = l
	}
	l.last = now
	t.mu.Unlock()
	r := l.limiter.ReserveN(now, 1)
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		return false, delay
	}
	return true, 0
}

// forgetIdle drops keys whose bucket is full again.
func (t *throttle) forgetIdle() {
	full := time.Duration(t.burst) * t.every
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, l := range t.limiters {
		if time.Since(l.last) > full {
			delete(t.limiters, k)
		}
	}
}

// retryAfterSeconds is a Retry-After value: whole seconds, at least one.
func retryAfterSeconds(d time.Duration) int {
	return int(math.Max(1, math.Ceil(d.Seconds())))
}
