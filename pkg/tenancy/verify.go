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

// JWKSCache fetches and caches authd's JSON Web Key Set. An unknown kid triggers a refetch, at
// most once per MinRefetchInterval, so forged kids cannot make it hammer authd.
type JWKSCache struct {
	URL                string
	Client             *http.Client
	MaxAge             time.Duration
	MinRefetchInterval time.Duration

	mu        sync.Mutex
	keys      map[string]crypto.PublicKey
	fetchedAt time.Time // the last attempt, successful or not
}

// NewJWKSCache caches the key set at url for 5 minutes, refetching at most every 10 seconds.
func NewJWKSCache(url string) *JWKSCache {
	return &JWKSCache{URL: url, Client: &http.Client{Timeout: 5 * time.Second}, MaxAge: 5 * time.Minute, MinRefetchInterval: 10 * time.Second}
}

// Key returns the public key kid.
func (c *JWKSCache) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, known := c.keys[kid]
	age := time.Since(c.fetchedAt)
	// Known keys are refreshed every MaxAge; an unknown kid, or a failed fetch, waits for
	// MinRefetchInterval, so that neither forged kids nor an absent authd cause a fetch per request.
	if (known && age < c.MaxAge) || (!known && !c.fetchedAt.IsZero() && age < c.MinRefetchInterval) {
		if !known {
			return nil, fmt.Errorf("unknown key %q", kid)
		}
		return key, nil
	}
	if err := c.fetch(ctx); err != nil {
		if known {
			return key, nil // a stale key beats failing every request while authd is away
		}
		return nil, err
	}
	if key, known = c.keys[kid]; !known {
		return nil, fmt.Errorf("unknown key %q", kid)
	}
	return key, nil
}

func (c *JWKSCache) fetch(ctx context.Context) error {
	c.fetchedAt = time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return err
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching the JWKS: status %d", resp.StatusCode)
	}
	var set struct {
		Keys []struct {
			KTY, CRV, X, Y, KID, Alg, Use string
		} `json:"keys"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("decoding the JWKS: %w", err)
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
	c.keys = keys
	return nil
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
