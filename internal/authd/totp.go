package authd

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP as authenticator apps expect it (RFC 6238): SHA-1, 6 digits, 30-second steps. A code of
// the previous or the next step is accepted too, for clocks that drift.
const (
	totpPeriod = 30
	totpSkew   = 1
)

var totpOptions = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// newTOTPKey makes a 160-bit secret for account, labelled with issuer in authenticator apps.
func newTOTPKey(issuer, account string) (*otp.Key, error) {
	return totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: totpPeriod,
		SecretSize: 20, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

// totpKeyOf rebuilds the key of a stored secret, for its otpauth URI and QR code.
func totpKeyOf(issuer, account, secret string) (*otp.Key, error) {
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		return nil, fmt.Errorf("the stored TOTP secret is not base32: %w", err)
	}
	return totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: totpPeriod,
		Secret: raw, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

// matchTOTP finds the time step whose code code is, within the skew around now, and newer
// than lastStep (nil: none used yet). A code of a step already used is refused: it may have
// been seen over a shoulder or phished.
func matchTOTP(secret, code string, now time.Time, lastStep *int64) (int64, bool) {
	code = strings.TrimSpace(code)
	if len(code) != 6 {
		return 0, false
	}
	current := now.Unix() / totpPeriod
	for step := current - totpSkew; step <= current+totpSkew; step++ {
		if lastStep != nil && step <= *lastStep {
			continue
		}
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totpOptions)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return step, true
		}
	}
	return 0, false
}

// recoveryCodeCount codes are made at each enrolment.
const recoveryCodeCount = 10

// recoveryEncoding leaves out the letters i, l and o, which people confuse with 1 and 0.
var recoveryEncoding = base32.NewEncoding("abcdefghjkmnpqrstuvwxyz023456789").WithPadding(base32.NoPadding)

// newRecoveryCodes makes recoveryCodeCount codes of 60 random bits each, as xxxx-xxxx-xxxx.
func newRecoveryCodes() ([]string, error) {
	codes := make([]string, recoveryCodeCount)
	for i := range codes {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		s := recoveryEncoding.EncodeToString(b)[:12]
		codes[i] = s[:4] + "-" + s[4:8] + "-" + s[8:]
	}
	return codes, nil
}

// normalizeRecoveryCode accepts a code as typed: any case, with or without dashes and spaces.
func normalizeRecoveryCode(code string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return r
	}, code)
}
