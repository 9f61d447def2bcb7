package tenancy

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The JWKS tests run the cache on a clock of their own, so that "the key set is older than
// MaxAge" needs no waiting, against an endpoint whose keys, failures and speed they control.

const (
	jwksIssuer   = "https://auth.tenancy.test"
	jwksAudience = "tenancy"
)

// signingKey is the Ed25519 key of kid, derived from it so that the server and the tokens agree.
func signingKey(kid string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("jwks test key " + kid))
	return ed25519.NewKeyFromSeed(seed[:])
}

// accessToken is a valid access token signed with the key of kid.
func accessToken(t *testing.T, kid string) string {
	t.Helper()
	now := time.Now()
	token := jwt.NewWithClaims(jwt.SigningMethodEdDSA, &Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: jwksIssuer, Audience: jwt.ClaimStrings{jwksAudience}, Subject: "u1",
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}})
	token.Header["typ"] = TokenType
	token.Header["kid"] = kid
	signed, err := token.SignedString(signingKey(kid))
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// jwksServer publishes the keys of the kids it is given, or fails the way it is told to, and
// counts the requests that reach it. While held, requests wait until it is released.
type jwksServer struct {
	*httptest.Server
	requests atomic.Int64
	// arrived receives one value per request that waits while the server is held.
	arrived chan struct{}

	mu      sync.Mutex
	kids    []string
	failure string // "" serves the keys
	gate    chan struct{}
}

// The ways jwksServer fails.
const (
	failStatus    = "an error status"
	failMalformed = "a malformed key set"
	failAbort     = "a broken connection"
)

func newJWKSServer(t *testing.T, kids ...string) *jwksServer {
	s := &jwksServer{kids: kids, arrived: make(chan struct{}, 100)}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close) // after the release registered by hold, since cleanups run last first
	return s
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	kids, failure, gate := slices.Clone(s.kids), s.failure, s.gate
	s.mu.Unlock()
	if gate != nil {
		s.arrived <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	switch failure {
	case failStatus:
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	case failMalformed:
		_, _ = w.Write([]byte(`{"keys": [`))
		return
	case failAbort:
		panic(http.ErrAbortHandler)
	}
	type jwk struct {
		KTY string `json:"kty"`
		CRV string `json:"crv"`
		Alg string `json:"alg"`
		Use string `json:"use"`
		KID string `json:"kid"`
		X   string `json:"x"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, kid := range kids {
		public := signingKey(kid).Public().(ed25519.PublicKey)
		set.Keys = append(set.Keys, jwk{"OKP", "Ed25519", "EdDSA", "sig", kid, base64.RawURLEncoding.EncodeToString(public)})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// publish makes the server answer with failure ("" for none) and, when it does not fail, the
// keys of kids.
func (s *jwksServer) publish(failure string, kids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failure, s.kids = failure, kids
}

// hold makes requests wait until the returned release is called (at the latest when the test
// ends, so that the server can close).
func (s *jwksServer) hold(t *testing.T) (release func()) {
	gate := make(chan struct{})
	s.mu.Lock()
	s.gate = gate
	s.mu.Unlock()
	release = sync.OnceFunc(func() {
		s.mu.Lock()
		s.gate = nil
		s.mu.Unlock()
		close(gate)
	})
	t.Cleanup(release)
	return release
}

// fakeClock is the cache's clock: it moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newCacheFor is NewJWKSCache for s, on clock.
func newCacheFor(s *jwksServer, clock *fakeClock) (*JWKSCache, *Verifier) {
	cache := NewJWKSCache(s.URL + "/.well-known/jwks.json")
	cache.Client = s.Client()
	cache.now = clock.now
	return cache, NewVerifier(jwksIssuer, jwksAudience, cache)
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func mustVerify(t *testing.T, v *Verifier, token, why string) {
	t.Helper()
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("%s: %v", why, err)
	}
}

func mustRefuse(t *testing.T, v *Verifier, token, why string) {
	t.Helper()
	if err := refusal(v, token); err != nil {
		t.Fatalf("%s: %v", why, err)
	}
}

// refusal says what is wrong when v does not refuse token as an invalid token.
func refusal(v *Verifier, token string) error {
	_, err := v.Verify(context.Background(), token)
	switch {
	case err == nil:
		return errors.New("the token was accepted")
	case !errors.Is(err, ErrInvalidToken):
		return fmt.Errorf("%w does not wrap ErrInvalidToken", err)
	}
	return nil
}

// awaitOrFail waits for done. It exists for a deadlock: rather than hang until the test binary's
// -timeout kills it without a word, it fails the test shortly before.
func awaitOrFail(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	var deadlock <-chan time.Time
	if deadline, ok := t.Deadline(); ok {
		deadlock = time.After(time.Until(deadline) * 9 / 10)
	}
	select {
	case <-done:
	case <-deadlock:
		t.Fatalf("%s never happened: a deadlock", what)
	}
}

// A key that left the key set must stop verifying tokens once the cached set is older than
// MaxAge, whatever the endpoint answers: a failed refresh does not extend the trust in the keys
// it could not confirm.
func TestJWKSCacheDoesNotTrustARemovedKeyPastMaxAgeWhenRefreshFails(t *testing.T) {
	for _, failure := range []string{failStatus, failMalformed, failAbort} {
		t.Run(failure, func(t *testing.T) {
			server := newJWKSServer(t, "old")
			clock := newClock()
			cache, v := newCacheFor(server, clock)
			old, successor := accessToken(t, "old"), accessToken(t, "new")
			mustVerify(t, v, old, "the published key")

			// The key is withdrawn, and the endpoint starts failing.
			server.publish(failure, "new")
			clock.advance(cache.MaxAge/2 + time.Second)
			mustVerify(t, v, old, "before MaxAge, the cached key rides out a failing endpoint")

			clock.advance(cache.MaxAge / 2)
			mustRefuse(t, v, old, "past MaxAge, with a failing refresh")
			mustRefuse(t, v, old, "past MaxAge, with the failure of the last refresh still fresh")

			server.publish("", "new")
			clock.advance(cache.MinRefetchInterval)
			mustVerify(t, v, successor, "the endpoint is back: its key set is trusted again")
			mustRefuse(t, v, old, "the endpoint is back, without the withdrawn key")
		})
	}
}

// A request that gives up while the key set is being fetched must neither abort the fetch that
// other requests wait for nor leave a failure behind that refuses them.
func TestJWKSCacheRefreshOutlivesACancelledRequest(t *testing.T) {
	server := newJWKSServer(t, "k1")
	cache, v := newCacheFor(server, newClock())
	// Whatever the first request leaves behind stays for the whole test.
	cache.MinRefetchInterval = time.Hour
	token := accessToken(t, "k1")
	release := server.hold(t)

	ctx, cancel := context.WithCancel(context.Background())
	refused := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, token)
		refused <- err
	}()
	<-server.arrived
	cancel()
	if err := <-refused; !errors.Is(err, context.Canceled) || !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a cancelled request got %v, want an invalid token because of its cancellation", err)
	}

	release()
	mustVerify(t, v, token, "the next request, after a cancelled one")
	if n := server.requests.Load(); n != 1 {
		t.Errorf("the endpoint was asked %d times, want once: the cancelled request's refresh went on and served the next", n)
	}
}

// Verifications that need a refresh share one fetch, which holds no lock: a slow endpoint delays
// no token whose key is cached. Unknown kids cannot make the cache fetch per request.
func TestJWKSCacheSharesOneRefreshWithoutHoldingTheLock(t *testing.T) {
	const n = 16
	server := newJWKSServer(t, "k1")
	clock := newClock()
	cache, v := newCacheFor(server, clock)
	cached, rotated := accessToken(t, "k1"), accessToken(t, "k2")
	mustVerify(t, v, cached, "the published key")

	// A successor is published, and the endpoint becomes slow. (Its kid is unknown to the cache,
	// which may refetch once MinRefetchInterval has passed.)
	server.publish("", "k1", "k2")
	clock.advance(cache.MinRefetchInterval)
	release := server.hold(t)
	results := make(chan error, n)
	for range n {
		go func() {
			_, err := v.Verify(context.Background(), rotated)
			results <- err
		}()
	}
	<-server.arrived

	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := v.Verify(context.Background(), cached); err != nil {
			t.Errorf("a token whose key is cached, while the key set is fetched: %v", err)
		}
	}()
	awaitOrFail(t, done, "verifying a token whose key is cached while the endpoint is slow")

	release()
	for range n {
		if err := <-results; err != nil {
			t.Errorf("a token of the new key: %v", err)
		}
	}
	if got := server.requests.Load(); got != 2 {
		t.Fatalf("the endpoint was asked %d times, want 2: the first fetch, and one refresh for %d verifications", got, n)
	}

	forgeAll := func(round int) {
		var wg sync.WaitGroup
		for i := range n {
			token := accessToken(t, fmt.Sprintf("forged-%d-%d", round, i))
			wg.Go(func() {
				if err := refusal(v, token); err != nil {
					t.Errorf("a forged kid: %v", err)
				}
			})
		}
		wg.Wait()
	}
	forgeAll(1)
	if got := server.requests.Load(); got != 2 {
		t.Fatalf("forged kids right after a refresh made the cache fetch: %d requests, want 2", got)
	}
	clock.advance(cache.MinRefetchInterval)
	forgeAll(2)
	if got := server.requests.Load(); got != 3 {
		t.Fatalf("%d forged kids after MinRefetchInterval: %d requests, want 3 (one refresh)", n, got)
	}
}
