package authd

import (
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

func TestMatchTOTP(t *testing.T) {
	key, err := newTOTPKey("Tenancy", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	secret := key.Secret()
	now := time.Unix(1_800_000_015, 0)
	code, err := totp.GenerateCodeCustom(secret, now, totpOptions)
	if err != nil {
		t.Fatal(err)
	}
	step, ok := matchTOTP(secret, code, now, nil)
	if !ok || step != now.Unix()/totpPeriod {
		t.Fatalf("the current code: step %d, ok %t", step, ok)
	}
	if _, ok := matchTOTP(secret, code, now, &step); ok {
		t.Fatal("a code whose step was used is accepted again (replay)")
	}
	if _, ok := matchTOTP(secret, code, now.Add(totpPeriod*time.Second), nil); !ok {
		t.Fatal("the previous step's code is refused: a clock 30 s behind cannot sign in")
	}
	if _, ok := matchTOTP(secret, code, now.Add(3*totpPeriod*time.Second), nil); ok {
		t.Fatal("a code 90 s old is accepted")
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, ok := matchTOTP(secret, bad, now, nil); ok {
			t.Fatalf("%q is accepted", bad)
		}
	}
	again, err := totpKeyOf("Tenancy", "alice@example.com", secret)
	if err != nil || again.Secret() != secret || !strings.HasPrefix(again.URL(), "otpauth://totp/Tenancy:alice@example.com?") {
		t.Fatalf("the stored secret does not give back its key: %v %v", again, err)
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes, err := newRecoveryCodes()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) != 14 || c[4] != '-' || c[9] != '-' || strings.ContainsAny(c, "ilo1") || seen[c] {
			t.Fatalf("code %q: want xxxx-xxxx-xxxx, unique, without i, l, o or 1", c)
		}
		seen[c] = true
	}
	if len(codes) != recoveryCodeCount {
		t.Fatalf("%d codes, want %d", len(codes), recoveryCodeCount)
	}
	if got := normalizeRecoveryCode(" ABCD-efgh-2345 "); got != "abcdefgh2345" {
		t.Fatalf("normalized %q", got)
	}
}
