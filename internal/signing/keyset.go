package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

const (
	// SecretName is the Secret, in the operator's namespace, that holds the key set.
	SecretName = "tenancy-signing-keys"
	// SecretKey is the Secret's data key with the key set as JSON.
	SecretKey = "keys.json"

	// EdDSA and ES256 are the algorithms a key may have (JWS "alg").
	EdDSA = "EdDSA"
	ES256 = "ES256"

	// MaxTokenLifetime bounds the lifetime of every token a key signs: a replaced key stays
	// published this long after it stopped signing. authd refuses longer access tokens.
	MaxTokenLifetime = 24 * time.Hour
)

// Key is one signing key.
type Key struct {
	KID       string
	Alg       string
	Private   crypto.Signer
	CreatedAt time.Time
	// SignsFrom is when the key starts signing; it is published from CreatedAt, earlier, so that
	// verifiers have it before the first token it signs.
	SignsFrom time.Time
	// ExpiresAt, set once a newer key signs, is when the key leaves the JWKS.
	ExpiresAt *time.Time
}

// Public is the key's public half.
func (k Key) Public() crypto.PublicKey { return k.Private.Public() }

// Set is the manager's key set.
type Set struct {
	Keys []Key
}

// storedKey is a Key as the Secret stores it.
type storedKey struct {
	KID        string     `json:"kid"`
	Alg        string     `json:"alg"`
	PrivateKey string     `json:"privateKey"` // PKCS #8, base64
	CreatedAt  time.Time  `json:"createdAt"`
	SignsFrom  time.Time  `json:"signsFrom"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
}

// Parse reads a key set from the Secret's JSON.
func Parse(data []byte) (*Set, error) {
	var stored struct {
		Keys []storedKey `json:"keys"`
	}
	if err := json.Unmarshal(data, &stored); err != nil {
		return nil, fmt.Errorf("decoding the signing keys: %w", err)
	}
	set := &Set{}
	for _, s := range stored.Keys {
		der, err := base64.StdEncoding.DecodeString(s.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", s.KID, err)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", s.KID, err)
		}
		signer, ok := parsed.(crypto.Signer)
		if !ok || algorithmOf(signer) != s.Alg {
			return nil, fmt.Errorf("signing key %s: not an %s key", s.KID, s.Alg)
		}
		set.Keys = append(set.Keys, Key{KID: s.KID, Alg: s.Alg, Private: signer, CreatedAt: s.CreatedAt, SignsFrom: s.SignsFrom, ExpiresAt: s.ExpiresAt})
	}
	return set, nil
}

// Marshal writes the key set as the Secret's JSON.
func (s *Set) Marshal() ([]byte, error) {
	stored := struct {
		Keys []storedKey `json:"keys"`
	}{Keys: []storedKey{}}
	for _, k := range s.Keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", k.KID, err)
		}
		stored.Keys = append(stored.Keys, storedKey{
			KID: k.KID, Alg: k.Alg, PrivateKey: base64.StdEncoding.EncodeToString(der),
			CreatedAt: k.CreatedAt, SignsFrom: k.SignsFrom, ExpiresAt: k.ExpiresAt,
		})
	}
	return json.Marshal(stored)
}

// Signer is the key that signs at now: the published key that started signing last.
func (s *Set) Signer(now time.Time) (Key, bool) {
	var signer Key
	found := false
	for _, k := range s.Published(now) {
		if !k.SignsFrom.After(now) && (!found || k.SignsFrom.After(signer.SignsFrom)) {
			signer, found = k, true
		}
	}
	return signer, found
}

// Published are the keys verifiers must know at now: all but the expired ones.
func (s *Set) Published(now time.Time) []Key {
	return slices.DeleteFunc(slices.Clone(s.Keys), func(k Key) bool { return k.ExpiresAt != nil && !k.ExpiresAt.After(now) })
}

// Policy says when to rotate.
type Policy struct {
	// Algorithm of new keys: EdDSA or ES256.
	Algorithm string
	// RotateEvery is the age at which the signing key gets a successor.
	RotateEvery time.Duration
	// PublishAhead is how long a successor is published before it signs: longer than verifiers
	// cache the JWKS.
	PublishAhead time.Duration
}

// Rotate brings the set up to date at now: a first key that signs at once when there is none, a
// successor published ahead when the signing key is due, expiry for keys that a newer one has
// replaced, and removal of expired keys. It reports whether anything changed.
func (s *Set) Rotate(now time.Time, p Policy) (bool, error) {
	changed := false
	if kept := s.Published(now); len(kept) != len(s.Keys) {
		s.Keys, changed = kept, true
	}
	signer, ok := s.Signer(now)
	if !ok {
		// Nobody can hold a token of a key that never existed: the first key signs at once.
		k, err := NewKey(p.Algorithm, now, now)
		if err != nil {
			return false, err
		}
		s.Keys = append(s.Keys, k)
		return true, nil
	}
	newest := slices.MaxFunc(s.Keys, func(a, b Key) int { return a.SignsFrom.Compare(b.SignsFrom) })
	if newest.KID == signer.KID && now.Sub(signer.SignsFrom) >= p.RotateEvery {
		k, err := NewKey(p.Algorithm, now, now.Add(p.PublishAhead))
		if err != nil {
			return false, err
		}
		s.Keys = append(s.Keys, k)
		changed = true
	}
	// Every key older than the signer stops verifying MaxTokenLifetime after the signer took over.
	for i, k := range s.Keys {
		if k.ExpiresAt == nil && k.SignsFrom.Before(signer.SignsFrom) {
			expires := signer.SignsFrom.Add(MaxTokenLifetime)
			s.Keys[i].ExpiresAt = &expires
			changed = true
		}
	}
	return changed, nil
}

// NewKey makes a key of algorithm alg.
func NewKey(alg string, createdAt, signsFrom time.Time) (Key, error) {
	var signer crypto.Signer
	var err error
	switch alg {
	case EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return Key{}, fmt.Errorf("unsupported signing algorithm %q: use %s or %s", alg, EdDSA, ES256)
	}
	if err != nil {
		return Key{}, err
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return Key{}, err
	}
	return Key{KID: hex.EncodeToString(id), Alg: alg, Private: signer, CreatedAt: createdAt.UTC(), SignsFrom: signsFrom.UTC()}, nil
}

func algorithmOf(signer crypto.Signer) string {
	switch pub := signer.Public().(type) {
	case ed25519.PublicKey:
		return EdDSA
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() {
			return ES256
		}
	}
	return ""
}

// JWK is a public key as RFC 7517 publishes it.
type JWK struct {
	KTY string `json:"kty"`
	CRV string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	KID string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWKS publishes the keys verifiers must know at now.
func (s *Set) JWKS(now time.Time) JWKS {
	set := JWKS{Keys: []JWK{}}
	for _, k := range s.Published(now) {
		set.Keys = append(set.Keys, ToJWK(k.KID, k.Public()))
	}
	return set
}

// ToJWK describes a public key.
func ToJWK(kid string, public crypto.PublicKey) JWK {
	b64 := base64.RawURLEncoding.EncodeToString
	switch pub := public.(type) {
	case ed25519.PublicKey:
		return JWK{KTY: "OKP", CRV: "Ed25519", X: b64(pub), KID: kid, Alg: EdDSA, Use: "sig"}
	case *ecdsa.PublicKey:
		point, err := pub.Bytes() // 0x04 || X || Y
		if err != nil {
			panic(fmt.Sprintf("signing: %v", err))
		}
		return JWK{KTY: "EC", CRV: "P-256", X: b64(point[1:33]), Y: b64(point[33:]), KID: kid, Alg: ES256, Use: "sig"}
	}
	panic(fmt.Sprintf("signing: unexpected public key %T", public))
}
