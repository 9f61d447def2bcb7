package tenancy

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenSize is the longest access token accepted; longer ones are refused before parsing.
const MaxTokenSize = 8 << 10

// ErrInvalidToken wraps every reason a token is refused.
var ErrInvalidToken = errors.New("invalid access token")

// KeyFinder finds the public key of a key id: a JWKSCache, or authd's own key set.
type KeyFinder interface {
	Key(ctx context.Context, kid string) (crypto.PublicKey, error)
}

// Verifier checks authd's access tokens: signature against the JWKS (EdDSA or ES256 only), typ
// at+jwt, issuer, audience, expiry and not-before.
type Verifier struct {
	issuer   string
	audience string
	keys     KeyFinder
	parser   *jwt.Parser
}

// NewVerifier verifies tokens of issuer for audience with the keys jwks finds (usually a
// JWKSCache of authd's /.well-known/jwks.json).
func NewVerifier(issuer, audience string, jwks KeyFinder) *Verifier {
	return &Verifier{
		issuer: issuer, audience: audience, keys: jwks,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg(), jwt.SigningMethodES256.Alg()}),
			jwt.WithIssuer(issuer), jwt.WithAudience(audience),
			jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(30*time.Second),
		),
	}
}

// Verify returns the claims of a valid token, or an error wrapping ErrInvalidToken.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, MaxTokenSize)
	}
	claims := &Claims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); typ != TokenType {
			return nil, fmt.Errorf("typ %q is not %s", typ, TokenType)
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		key, err := v.keys.Key(ctx, kid)
		if err != nil {
			return nil, err
		}
		// The key decides the algorithm: a token may not pick another one for it.
		if alg := algorithmFor(key); alg != t.Method.Alg() {
			return nil, fmt.Errorf("key %s is for %s, not %s", kid, alg, t.Method.Alg())
		}
		return key, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return claims, nil
}

func algorithmFor(key crypto.PublicKey) string {
	switch key.(type) {
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA.Alg()
	case *ecdsa.PublicKey:
		return jwt.SigningMethodES256.Alg()
	}
	return ""
}

// JWKSCache fetches and caches authd's JSON Web Key Set.
//
// A key is trusted for at most MaxAge after the start of the fetch that last returned it. Past
// that, a key set that cannot be refreshed trusts no key at all: a key removed from the set
// (rotated out, or withdrawn after a leak) stops verifying tokens at most MaxAge after it left,
// even while authd's endpoint errors. To ride out short outages, the set is refreshed in the
// background from half its MaxAge on; while such refreshes fail, the cached keys keep working
// until MaxAge, so that with steady traffic an outage of authd shorter than MaxAge/2 refuses no
// token.
//
// An unknown kid, or a set past MaxAge, makes the caller wait for a refresh. Refreshes start at
// most once per MinRefetchInterval, successful or not, so that neither forged kids nor an absent
// authd cause a fetch per request. Only one refresh runs at a time and every caller that needs
// one shares it. It runs on a context of its own, without holding the cache's lock: a cancelled
// request stops waiting but neither aborts the refresh others wait on nor records a failure, and
// a slow endpoint delays no token whose key is cached.
type JWKSCache struct {
	URL    string
	Client *http.Client
	// MaxAge is how long keys are trusted after they were fetched; zero means 5 minutes.
	MaxAge time.Duration
	// MinRefetchInterval is the least time between the starts of two refreshes.
	MinRefetchInterval time.Duration

	// now is time.Now, but for tests.
	now func() time.Time

	mu        sync.Mutex
	keys      map[string]crypto.PublicKey
	fetchedAt time.Time // when the refresh that fetched keys started; zero before the first success
	triedAt   time.Time // when the last refresh started, successful or not
	lastErr   error     // why the last refresh failed; nil after a success
	inFlight  *refresh
}

// refresh is one fetch of the key set, shared by the callers that wait for it.
type refresh struct {
	done chan struct{}
	err  error // set before done is closed
}

// refreshTimeout bounds a refresh, which no request's context bounds, for a Client without a
// timeout of its own.
const refreshTimeout = 30 * time.Second

// NewJWKSCache trusts the keys of the key set at url for 5 minutes (refreshing it from 2.5
// minutes on), and refetches it at most every 10 seconds.
func NewJWKSCache(url string) *JWKSCache {
	return &JWKSCache{URL: url, Client: &http.Client{Timeout: 5 * time.Second}, MaxAge: 5 * time.Minute, MinRefetchInterval: 10 * time.Second}
}

// Key returns the public key kid.
func (c *JWKSCache) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	c.mu.Lock()
	now := c.clock()
	age, maxAge := now.Sub(c.fetchedAt), c.maxAge()
	fresh := !c.fetchedAt.IsZero() && age < maxAge
	key, known := c.keys[kid]
	if fresh && known {
		if age >= maxAge/2 {
			c.startRefresh(ctx, now) // refresh ahead, without waiting for it
		}
		c.mu.Unlock()
		return key, nil
	}
	r := c.startRefresh(ctx, now)
	lastErr := c.lastErr
	c.mu.Unlock()
	if r == nil {
		if !fresh && lastErr != nil {
			return nil, fmt.Errorf("the JWKS could not be refreshed: %w", lastErr)
		}
		return nil, fmt.Errorf("unknown key %q", kid)
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the JWKS: %w", context.Cause(ctx))
	}
	if r.err != nil {
		return nil, r.err
	}
	c.mu.Lock()
	key, known = c.keys[kid]
	c.mu.Unlock()
	if !known {
		return nil, fmt.Errorf("unknown key %q", kid)
	}
	return key, nil
}

// startRefresh returns the refresh in flight, or starts one, or returns nil when the last one
// started less than MinRefetchInterval ago. The caller holds mu.
func (c *JWKSCache) startRefresh(ctx context.Context, now time.Time) *refresh {
	if c.inFlight != nil {
		return c.inFlight
	}
	if !c.triedAt.IsZero() && now.Sub(c.triedAt) < c.MinRefetchInterval {
		return nil
	}
	r := &refresh{done: make(chan struct{})}
	c.inFlight, c.triedAt = r, now
	// Detached from the request that happened to need it (keeping its values, such as a trace),
	// since others may wait for it too.
	go c.runRefresh(context.WithoutCancel(ctx), r, now)
	return r
}

// runRefresh fetches the key set without holding mu, then stores it, or the failure, and lets the
// waiting callers go.
func (c *JWKSCache) runRefresh(ctx context.Context, r *refresh, started time.Time) {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	keys, err := c.fetch(ctx)
	c.mu.Lock()
	if err == nil {
		c.keys, c.fetchedAt = keys, started
	}
	c.lastErr, c.inFlight, r.err = err, nil, err
	c.mu.Unlock()
	close(r.done)
}

func (c *JWKSCache) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

func (c *JWKSCache) maxAge() time.Duration {
	if c.MaxAge > 0 {
		return c.MaxAge
	}
	return 5 * time.Minute
}

func (c *JWKSCache) fetch(ctx context.Context) (map[string]crypto.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return nil, err
	}
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the JWKS: status %d", resp.StatusCode)
	}
	var set struct {
		Keys []struct {
			KTY, CRV, X, Y, KID, Alg, Use string
		} `json:"keys"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decoding the JWKS: %w", err)
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if key, err := parseJWK(k.KTY, k.CRV, k.Alg, k.X, k.Y); err == nil {
			keys[k.KID] = key
		}
	}
	return keys, nil
}

// parseJWK reads an Ed25519 (EdDSA) or P-256 (ES256) public key.
func parseJWK(kty, crv, alg, x, y string) (crypto.PublicKey, error) {
	b64 := base64.RawURLEncoding.DecodeString
	switch {
	case kty == "OKP" && crv == "Ed25519" && alg == "EdDSA":
		raw, err := b64(x)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, errors.New("malformed Ed25519 key")
		}
		return ed25519.PublicKey(raw), nil
	case kty == "EC" && crv == "P-256" && alg == "ES256":
		rx, errX := b64(x)
		ry, errY := b64(y)
		if errX != nil || errY != nil || len(rx) != 32 || len(ry) != 32 {
			return nil, errors.New("malformed P-256 key")
		}
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, rx...), ry...))
	}
	return nil, fmt.Errorf("unsupported key %s/%s/%s", kty, crv, alg)
}
