package apikey

import (
	"errors"
	"hash/crc32"
	"regexp"
	"strings"
	"testing"
)

// wellFormed is the key format written out independently of Parse.
var wellFormed = regexp.MustCompile(`^tnc_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}$`)

// FuzzParse feeds arbitrary strings to Parse: it must not panic, it must refuse with ErrMalformed
// whatever is not shaped like a key or fails the checksum, and it must refuse every one-character
// change of a key it accepts (a CRC-32 catches every such change, and the checksum encodes all
// of its 32 bits).
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"tnc_0123456789ab_" + strings.Repeat("A", secretLength),
		"", "tnc_", "tnc__", "ghp_abc", strings.Repeat("_", keyLength), "tnc_0123456789ab_" + strings.Repeat("é", 24) + "x",
	} {
		f.Add(seed)
	}
	// A key with a correct checksum, so that the fuzzer starts from one Parse accepts.
	body := "tnc_0123456789ab_" + strings.Repeat("A", secretLength)
	f.Add(body + checksum(body))
	f.Fuzz(func(t *testing.T, key string) {
		id, err := Parse(key)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) = %v, want ErrMalformed", key, err)
			}
			return
		}
		if !wellFormed.MatchString(key) {
			t.Fatalf("Parse accepted %q, which is not tnc_<12 base62>_<49 base62>", key)
		}
		if id != key[4:16] {
			t.Fatalf("Parse(%q) returned key id %q", key, id)
		}
		if sum := crc32.ChecksumIEEE([]byte(key[:len(key)-checkLength])); base62FromUint32(sum) != key[len(key)-checkLength:] {
			t.Fatalf("Parse accepted %q with a wrong checksum", key)
		}
		for i := range len(key) {
			for _, c := range []byte{'0', 'z', '_'} {
				if key[i] == c {
					continue
				}
				changed := key[:i] + string(c) + key[i+1:]
				if _, err := Parse(changed); err == nil {
					t.Fatalf("Parse accepted %q and also %q, one character apart", key, changed)
				}
			}
		}
	})
}

// base62FromUint32 writes n in six base62 digits, as the checksum does.
func base62FromUint32(n uint32) string {
	out := make([]byte, checkLength)
	for i := checkLength - 1; i >= 0; i-- {
		out[i] = alphabet[n%62]
		n /= 62
	}
	return string(out)
}
