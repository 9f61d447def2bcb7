package tctx

import (
	"strings"
	"testing"
	"time"
)

func TestSignRefusesAmbiguousPrincipals(t *testing.T) {
	key := Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}
	exp := time.Unix(2000000000, 0)
	cases := []struct {
		name string
		ctx  Context
		ok   bool
	}{
		{"user only", Context{UserID: "u", OrgID: "o", Expires: exp}, true},
		{"api key only", Context{APIKeyID: "k", OrgID: "o", ProjectID: "p", Expires: exp}, true},
		{"both principals", Context{UserID: "u", APIKeyID: "k", Expires: exp}, false},
		{"no principal", Context{OrgID: "o", Expires: exp}, false},
		{"project without organization", Context{UserID: "u", ProjectID: "p", Expires: exp}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Sign(key, tc.ctx)
			if (err == nil) != tc.ok {
				t.Fatalf("Sign() error = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && len(strings.Split(got, ".")) != 8 {
				t.Fatalf("Sign() = %q, want 8 dot-separated fields", got)
			}
		})
	}
}

func TestSignIsDeterministicAndKeyed(t *testing.T) {
	c := Context{UserID: "u", OrgID: "o", Expires: time.Unix(2000000000, 0)}
	a, _ := Sign(Key{ID: "k1", Secret: []byte("secret-one-secret-one-secret-one")}, c)
	b, _ := Sign(Key{ID: "k1", Secret: []byte("secret-one-secret-one-secret-one")}, c)
	other, _ := Sign(Key{ID: "k1", Secret: []byte("secret-two-secret-two-secret-two")}, c)
	if a != b {
		t.Fatalf("same key and context signed twice differ: %q vs %q", a, b)
	}
	if a == other {
		t.Fatal("different keys gave the same signature")
	}
	if want := "v1.k1.u..o..2000000000."; !strings.HasPrefix(a, want) {
		t.Fatalf("Sign() = %q, want prefix %q", a, want)
	}
}
