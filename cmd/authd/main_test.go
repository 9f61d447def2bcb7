package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tenancy-dev/tenancy/internal/version"
)

func TestParseFlags(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	c, err := parseFlags(nil, env(map[string]string{"TENANCY_DATABASE_URL": "postgres://db/tenancy"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.server.Issuer != "http://localhost:8090" || c.server.AccessTokenTTL != 15*time.Minute || c.server.AllowSignup ||
		c.databaseRole != "tenancy_authd" || c.server.RefreshReuseInterval != 10*time.Second || c.listen != ":8090" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if c.server.Throttle.AddressBurst != 40 || c.server.Throttle.AccountFreeFailures != 10 || len(c.server.Throttle.TrustedProxies) != 0 {
		t.Fatalf("unexpected throttle defaults: %+v", c.server.Throttle)
	}
	c, err = parseFlags([]string{"--database-url=x", "--trusted-proxies=10.0.0.0/8, fd00::1/64"}, env(nil))
	if err != nil || len(c.server.Throttle.TrustedProxies) != 2 || c.server.Throttle.TrustedProxies[1].String() != "fd00::/64" {
		t.Fatalf("--trusted-proxies takes CIDRs: %+v %v", c.server.Throttle.TrustedProxies, err)
	}
	c, err = parseFlags([]string{"--database-url=x", "--public-url=https://auth.example.com", "--allow-signup"}, env(nil))
	if err != nil || c.server.Issuer != "https://auth.example.com" || !c.server.AllowSignup {
		t.Fatalf("the issuer follows --public-url: %+v %v", c.server, err)
	}
	if c.server.SMTP != nil {
		t.Fatalf("no mail without --smtp-url: %+v", c.server.SMTP)
	}
	c, err = parseFlags([]string{"--database-url=x", "--public-url=https://auth.example.com"}, env(map[string]string{"TENANCY_SMTP_URL": "smtps://u:p@mail.example.com"}))
	if err != nil || c.server.SMTP == nil || c.server.SMTP.Port != 465 || c.server.SMTP.From != `"Tenancy" <no-reply@auth.example.com>` {
		t.Fatalf("$TENANCY_SMTP_URL sets the mail server, the sender defaults to the public host: %+v %v", c.server.SMTP, err)
	}
	for args, want := range map[string]string{
		"":                                      "--database-url: required",
		"--database-url=x --public-url=ftp://x": "--public-url",
		"--database-url=x --access-token-ttl=48h":                    "--access-token-ttl",
		"--database-url=x --refresh-reuse-interval=5m":               "--refresh-reuse-interval",
		"--database-url=x --session-lifetime=1m":                     "--session-lifetime",
		"--database-url=x --trusted-proxies=10.0.0.0":                "--trusted-proxies",
		"--database-url=x --login-address-burst=0":                   "--login-address-burst",
		"--database-url=x --login-account-max-delay=1ms":             "--login-account-max-delay",
		"--database-url=x --smtp-url=http://mail":                    "--smtp-url",
		"--database-url=x --smtp-url=smtp://mail --mail-from=nobody": "--mail-from",
	} {
		if _, err := parseFlags(strings.Fields(args), env(nil)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseFlags(%q) error = %v, want one mentioning %s", args, err, want)
		}
	}
}

// TestVersionNeedsNoOtherFlag: --version answers before the flags that running needs are checked.
func TestVersionNeedsNoOtherFlag(t *testing.T) {
	if _, err := parseFlags([]string{"--version"}, func(string) string { return "" }); !errors.Is(err, version.ErrRequested) {
		t.Fatalf("parseFlags(--version) = %v, want version.ErrRequested", err)
	}
}
