package authd

import (
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ThrottleConfig bounds password attempts (logins, password changes, invitations accepted with
// a password).
type ThrottleConfig struct {
	// AddressBurst attempts from one client address, for any accounts, then one per
	// AddressInterval: one address cannot guess many accounts.
	AddressBurst    int
	AddressInterval time.Duration
	// AccountFreeFailures failed attempts on one account go unhindered; after them each further
	// failure makes the next attempt wait, from AccountDelay doubling up to AccountMaxDelay.
	// Failures are counted for the account and address together, and for the account from every
	// address; the latter never slows down an address the account signed in from within
	// FamiliarFor, so a flood from elsewhere cannot lock the owner out.
	AccountFreeFailures int
	AccountDelay        time.Duration
	AccountMaxDelay     time.Duration
	FamiliarFor         time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names the client address.
	TrustedProxies []netip.Prefix
}

// DefaultThrottle is authd's default throttling.
var DefaultThrottle = ThrottleConfig{
	AddressBurst: 40, AddressInterval: 1500 * time.Millisecond,
	AccountFreeFailures: 10, AccountDelay: time.Second, AccountMaxDelay: 15 * time.Minute,
	FamiliarFor: 30 * 24 * time.Hour,
}

// throttle limits attempts per key (a client address): a burst, then one per interval. Keys idle
// long enough to have refilled are forgotten.
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

// backoff counts failures per key and, past a number of free ones, makes the next attempt wait
// a delay that doubles with each further failure, up to a maximum. It never blocks for longer
// than that maximum after the last failure.
type backoff struct {
	free     int
	delay    time.Duration
	maxDelay time.Duration

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	count   int
	last    time.Time
	blocked time.Time // no attempt before
}

func newBackoff(free int, delay, maxDelay time.Duration) *backoff {
	return &backoff{free: free, delay: delay, maxDelay: maxDelay, keys: map[string]*failures{}}
}

// wait is how long key must wait before its next attempt; 0 lets it try now.
func (b *backoff) wait(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.keys[key]; f != nil && now.Before(f.blocked) {
		return f.blocked.Sub(now)
	}
	return 0
}

// fail counts a failed attempt of key.
func (b *backoff) fail(key string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.keys[key]
	if f == nil {
		f = &failures{}
		b.keys[key] = f
	}
	f.count++
	f.last = now
	if over := f.count - b.free; over > 0 {
		d := b.maxDelay
		if over <= 32 {
			d = min(b.maxDelay, b.delay<<(over-1))
		}
		f.blocked = now.Add(d)
	}
}

// succeed forgets key's failures.
func (b *backoff) succeed(key string) {
	b.mu.Lock()
	delete(b.keys, key)
	b.mu.Unlock()
}

// forgetIdle drops keys without a failure for twice the longest delay: their count starts over.
func (b *backoff) forgetIdle(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, f := range b.keys {
		if now.Sub(f.last) > 2*b.maxDelay {
			delete(b.keys, k)
		}
	}
}

// retryAfterSeconds is a Retry-After value: whole seconds, at least one.
func retryAfterSeconds(d time.Duration) int {
	return int(math.Max(1, math.Ceil(d.Seconds())))
}
