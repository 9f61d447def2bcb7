package tenancy

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The fuzz tests sign with fixed keys, so that the seeds under testdata/fuzz stay valid tokens.
const (
	fuzzIssuer   = "https://auth.tenancy.test"
	fuzzAudience = "tenancy"
	fuzzEdKID    = "ed-1"
	fuzzECKID    = "ec-1"
)

var (
	fuzzEdKey = ed25519.NewKeyFromSeed([]byte("tenancy fuzz ed25519 seed 32 byt"))
	fuzzECKey = mustECKey()
)

var fuzzECSeed = sha256.Sum256([]byte("tenancy fuzz p-256 key"))

func mustECKey() *ecdsa.PrivateKey {
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), fuzzECSeed[:])
	if err != nil {
		panic(err)
	}
	return key
}

// staticKeys is a KeyFinder over the two fuzz keys.
type staticKeys map[string]crypto.PublicKey

func (k staticKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if key, ok := k[kid]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("unknown key %q", kid)
}

func fuzzVerifier() *Verifier {
	return NewVerifier(fuzzIssuer, fuzzAudience, staticKeys{fuzzEdKID: fuzzEdKey.Public(), fuzzECKID: &fuzzECKey.PublicKey})
}

// signedToken signs header and payload (JSON, before base64url) with the key of kid.
func signedToken(tb testing.TB, kid, header, payload string) string {
	tb.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	var sig []byte
	var err error
	switch kid {
	case fuzzEdKID:
		sig, err = jwt.SigningMethodEdDSA.Sign(input, fuzzEdKey)
	default:
		sig, err = jwt.SigningMethodES256.Sign(input, fuzzECKey)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// A payload that Verify accepts until 2099.
const fuzzGoodPayload = `{"iss":"https://auth.tenancy.test","aud":"tenancy","sub":"u1","exp":4070908800,"iat":1700000000,"nbf":1700000000,` +
	`"jti":"j1","client_id":"tenancy","org":"o1","role":"Admin","scope":"projects:write","tctx":"x"}`

// properlySigned says, independently of the jwt library, whether token is three base64url parts
// whose signature verifies with the key its header names, under the algorithm that key is for.
func properlySigned(token string) (header map[string]any, ok bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, false
	}
	rawHeader, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	sig, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return nil, false
	}
	var h map[string]any
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return nil, false
	}
	input := []byte(parts[0] + "." + parts[1])
	switch h["kid"] {
	case fuzzEdKID:
		return h, h["alg"] == "EdDSA" && ed25519.Verify(fuzzEdKey.Public().(ed25519.PublicKey), input, sig)
	case fuzzECKID:
		if h["alg"] != "ES256" || len(sig) != 64 {
			return h, false
		}
		digest := sha256.Sum256(input)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return h, ecdsa.Verify(&fuzzECKey.PublicKey, digest[:], r, s)
	}
	return h, false
}

// FuzzVerify feeds arbitrary strings to Verify: it must not panic, and whatever it accepts must
// be properly signed by a known key with typ at+jwt, for our issuer and audience, and unexpired.
func FuzzVerify(f *testing.F) {
	v := fuzzVerifier()
	seeds := []string{
		signedToken(f, fuzzEdKID, `{"alg":"EdDSA","typ":"at+jwt","kid":"ed-1"}`, fuzzGoodPayload),
		signedToken(f, fuzzECKID, `{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`, fuzzGoodPayload),
		signedToken(f, fuzzEdKID, `{"alg":"ES256","typ":"at+jwt","kid":"ed-1"}`, fuzzGoodPayload),
		signedToken(f, fuzzEdKID, `{"alg":"EdDSA","typ":"JWT","kid":"ed-1"}`, fuzzGoodPayload),
		`eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0Iiwia2lkIjoiZWQtMSJ9.` + base64.RawURLEncoding.EncodeToString([]byte(fuzzGoodPayload)) + `.`,
		"", ".", "..", "a.b.c", "e30.e30.e30",
	}
	// The first two seeds are good tokens, so that the fuzzer starts from the accepting path.
	for _, good := range seeds[:2] {
		if _, err := v.Verify(context.Background(), good); err != nil {
			f.Fatalf("a well-signed seed was refused: %v", err)
		}
	}
	for _, seed := range seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := v.Verify(context.Background(), token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify refused with %v, which does not wrap ErrInvalidToken", err)
			}
			return
		}
		header, signed := properlySigned(token)
		if !signed {
			t.Fatalf("Verify accepted a token that is not properly signed: %q", token)
		}
		checkAccepted(t, header, claims)
	})
}

// FuzzVerifySigned signs arbitrary header and payload bytes with the real keys, so that the claims
// parsing behind a valid signature is fuzzed too: it must not panic, and an accepted token must
// still say at+jwt, name our issuer and audience, carry an expiry, and not have expired.
func FuzzVerifySigned(f *testing.F) {
	f.Add(true, `{"alg":"EdDSA","typ":"at+jwt","kid":"ed-1"}`, fuzzGoodPayload)
	f.Add(false, `{"alg":"ES256","typ":"at+jwt","kid":"ec-1"}`, fuzzGoodPayload)
	f.Add(true, `{"alg":"EdDSA","typ":"at+jwt","kid":"ed-1"}`, `{"iss":"https://auth.tenancy.test","aud":["tenancy","x"],"exp":4070908800.5}`)
	f.Add(true, `{"alg":"EdDSA","typ":"at+jwt","kid":"ed-1"}`, `{"iss":"https://auth.tenancy.test","aud":"tenancy","exp":1}`)
	f.Add(true, `{"alg":"EdDSA","typ":"at+jwt","kid":"ed-1"}`, `{"iss":"https://auth.tenancy.test","aud":"tenancy","exp":"4070908800"}`)
	f.Add(false, `{"alg":"ES256","typ":"at+jwt","kid":"ec-1","crit":["exp"]}`, `{"iss":"https://auth.tenancy.test","aud":"tenancy","exp":4070908800,"nbf":4070908800}`)
	f.Add(true, `{"alg":"EdDSA","typ":["at+jwt"],"kid":"ed-1"}`, `null`)
	v := fuzzVerifier()
	f.Fuzz(func(t *testing.T, ed bool, header, payload string) {
		kid := fuzzECKID
		if ed {
			kid = fuzzEdKID
		}
		token := signedToken(t, kid, header, payload)
		claims, err := v.Verify(context.Background(), token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify refused with %v, which does not wrap ErrInvalidToken", err)
			}
			return
		}
		parsedHeader, signed := properlySigned(token)
		if !signed {
			t.Fatalf("Verify accepted a token signed by another key than its header names: header %s", header)
		}
		checkAccepted(t, parsedHeader, claims)
	})
}

// checkAccepted holds what every accepted token must satisfy.
func checkAccepted(t *testing.T, header map[string]any, claims *Claims) {
	t.Helper()
	if header["typ"] != TokenType {
		t.Fatalf("accepted typ %v", header["typ"])
	}
	if claims.Issuer != fuzzIssuer {
		t.Fatalf("accepted issuer %q", claims.Issuer)
	}
	audienceOK := false
	for _, aud := range claims.Audience {
		audienceOK = audienceOK || aud == fuzzAudience
	}
	if !audienceOK {
		t.Fatalf("accepted audience %v", claims.Audience)
	}
	if claims.ExpiresAt == nil || claims.ExpiresAt.Add(30*time.Second).Before(time.Now()) {
		t.Fatalf("accepted expiry %v", claims.ExpiresAt)
	}
}
