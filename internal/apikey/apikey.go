package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"strings"
)

const (
	// Prefix starts every key.
	Prefix        = "tnc_"
	keyIDLength   = 12
	secretLength  = 43 // 62^43 > 2^256
	checkLength   = 6  // 62^6 > 2^32
	alphabet      = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	keyLength     = len(Prefix) + keyIDLength + 1 + secretLength + checkLength
	secretEntropy = 32 // bytes
)

// Key is a freshly generated API key.
type Key struct {
	// Plaintext is the whole key; it is shown once and never stored.
	Plaintext string
	// ID is the public key id.
	ID string
}

// DisplayPrefix is the part of the key that is safe to show: tnc_<key id>.
func (k Key) DisplayPrefix() string { return Prefix + k.ID }

// Hash is what the database stores: SHA-256 of the whole key.
func (k Key) Hash() []byte { return Hash(k.Plaintext) }

// Hash returns SHA-256 of a key string.
func Hash(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// New generates a key from crypto/rand.
func New() (Key, error) {
	idBytes := make([]byte, 9) // 72 bits → 12 base62 characters
	secretBytes := make([]byte, secretEntropy)
	if _, err := rand.Read(idBytes); err != nil {
		return Key{}, fmt.Errorf("generating a key id: %w", err)
	}
	if _, err := rand.Read(secretBytes); err != nil {
		return Key{}, fmt.Errorf("generating a key: %w", err)
	}
	id := Base62(idBytes, keyIDLength)
	body := Prefix + id + "_" + Base62(secretBytes, secretLength)
	return Key{Plaintext: body + checksum(body), ID: id}, nil
}

// ErrMalformed means a string is not a well-formed Tenancy API key.
var ErrMalformed = errors.New("not a well-formed Tenancy API key")

// Parse checks a key's shape and checksum and returns its key id. It does not say whether the
// key is valid: only the database knows that.
func Parse(key string) (string, error) {
	if len(key) != keyLength || !strings.HasPrefix(key, Prefix) || key[len(Prefix)+keyIDLength] != '_' {
		return "", ErrMalformed
	}
	id := key[len(Prefix) : len(Prefix)+keyIDLength]
	rest := key[len(Prefix)+keyIDLength+1:]
	if !inAlphabet(id) || !inAlphabet(rest) {
		return "", ErrMalformed
	}
	body, sum := key[:len(key)-checkLength], key[len(key)-checkLength:]
	if checksum(body) != sum {
		return "", ErrMalformed
	}
	return id, nil
}

func checksum(body string) string {
	c := crc32.ChecksumIEEE([]byte(body))
	return Base62(big.NewInt(int64(c)).Bytes(), checkLength)
}

// Base62 encodes b as a big-endian number in exactly width characters (zero-padded), in the
// alphabet of the keys. internal/oauthsecret makes client secrets with it.
func Base62(b []byte, width int) string {
	n := new(big.Int).SetBytes(b)
	base := big.NewInt(int64(len(alphabet)))
	out := make([]byte, width)
	mod := new(big.Int)
	for i := width - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		out[i] = alphabet[mod.Int64()]
	}
	return string(out)
}

func inAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}
