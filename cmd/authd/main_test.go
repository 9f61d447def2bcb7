package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
		"--database-url=x --tls-cert-file=tls.crt":                   "--tls-key-file: required with --tls-cert-file",
		"--database-url=x --tls-key-file=tls.key":                    "--tls-cert-file: required with --tls-key-file",
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

// TestTLSConfig: without --tls-cert-file authd serves plain HTTP; with a pair it serves HTTPS that
// a client trusting the certificate reaches; a key that is not the certificate's is refused at
// start, naming the flags.
func TestTLSConfig(t *testing.T) {
	if c, err := tlsConfig("", ""); c != nil || err != nil {
		t.Fatalf("tlsConfig without files = %v, %v; want plain HTTP", c, err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert := writePair(t, certFile, keyFile)
	c, err := tlsConfig(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	server.TLS = c
	server.StartTLS()
	defer server.Close()
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := client.Get(strings.Replace(server.URL, "127.0.0.1", "localhost", 1))
	if err != nil {
		t.Fatalf("a client that trusts the certificate: %v", err)
	}
	_ = resp.Body.Close()
	if resp.TLS == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET over TLS: %s, TLS %v", resp.Status, resp.TLS != nil)
	}

	otherKey := filepath.Join(dir, "other.key")
	writePair(t, filepath.Join(dir, "other.crt"), otherKey)
	if _, err := tlsConfig(certFile, otherKey); err == nil || !strings.Contains(err.Error(), "--tls-cert-file and --tls-key-file") {
		t.Fatalf("tlsConfig with another certificate's key = %v, want an error naming the flags", err)
	}
}

// writePair writes a self-signed certificate for localhost and its key.
func writePair(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
