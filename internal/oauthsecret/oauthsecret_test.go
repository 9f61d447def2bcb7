package oauthsecret

import (
	"crypto/sha256"
	"regexp"
	"testing"
)

func TestNewMakesDistinctWellFormedSecrets(t *testing.T) {
	shape := regexp.MustCompile(`^tcs_[0-9A-Za-z]{43}$`)
	seen := map[string]bool{}
	for range 100 {
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if !shape.MatchString(s) || len(s) != Length {
			t.Fatalf("secret %q…: want tcs_ and 43 base62 characters", s[:8])
		}
		if seen[s] {
			t.Fatal("the same secret twice")
		}
		seen[s] = true
	}
}

func TestHashIsSHA256OfTheWholeSecret(t *testing.T) {
	want := sha256.Sum256([]byte("tcs_example"))
	if got := Hash("tcs_example"); string(got) != string(want[:]) {
		t.Errorf("Hash = %x, want %x", got, want)
	}
}
