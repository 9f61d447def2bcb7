package apikey

import (
	"errors"
	"math/big"
	"strings"
	"testing"
)

func TestNewKeysParseAndDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k.Plaintext, "tnc_"+k.ID+"_") || len(k.Plaintext) != keyLength {
			t.Fatalf("key %q does not look like tnc_<id>_<secret><checksum> of length %d", k.Plaintext, keyLength)
		}
		id, err := Parse(k.Plaintext)
		if err != nil || id != k.ID {
			t.Fatalf("Parse(%q) = %q, %v; want %q", k.Plaintext, id, err, k.ID)
		}
		if seen[k.Plaintext] || seen[k.ID] {
			t.Fatalf("generated %q twice", k.Plaintext)
		}
		seen[k.Plaintext], seen[k.ID] = true, true
	}
}

func TestParseRejects(t *testing.T) {
	k, err := New()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := []struct {
		name, key string
	}{
		{"empty", ""},
		{"other prefix", "ghp_" + k.Plaintext[4:]},
		{"one character of the secret changed", flip(k.Plaintext, 30)},
		{"one character of the key id changed", flip(k.Plaintext, 6)},
		{"checksum changed", flip(k.Plaintext, len(k.Plaintext)-1)},
		{"truncated", k.Plaintext[:len(k.Plaintext)-1]},
		{"extended", k.Plaintext + "0"},
		{"characters outside base62", strings.Replace(k.Plaintext, k.Plaintext[20:21], "-", 1)},
		{"missing separator", strings.Replace(k.Plaintext, "_", "0", 2)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.key); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) error = %v, want ErrMalformed", tc.key, err)
			}
		})
	}
}

func TestSecretEncodingKeepsAll256Bits(t *testing.T) {
	// Decoding the 43 characters gives back the 32 bytes: the encoding never truncates.
	for _, fill := range []byte{0x00, 0x01, 0x7f, 0xff} {
		raw := make([]byte, secretEntropy)
		for i := range raw {
			raw[i] = fill
		}
		decoded := new(big.Int)
		for _, c := range Base62(raw, secretLength) {
			decoded.Mul(decoded, big.NewInt(62))
			decoded.Add(decoded, big.NewInt(int64(strings.IndexRune(alphabet, c))))
		}
		if decoded.Cmp(new(big.Int).SetBytes(raw)) != 0 {
			t.Fatalf("32 bytes of %#x did not survive base62 in %d characters", fill, secretLength)
		}
	}
}
