package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tenancy-dev/tenancy/internal/webhookcert"
)

// TestEnsureTLS: the first run makes a CA and authd's certificate for every loopback name; later
// runs keep both while they have more than 30 days left, replace only the certificate when it
// alone is stale, and replace both when the CA is.
func TestEnsureTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	first, renewed, err := ensureTLS(dir, now)
	if err != nil || !renewed {
		t.Fatalf("first ensureTLS = %v, renewed %v; want a new CA", err, renewed)
	}
	ca := readCert(t, first.CAFile)
	if !ca.IsCA || ca.NotAfter.Sub(now) != devCertLifetime || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("the CA: IsCA %v, lifetime %s, key %s; want an ECDSA CA for a year", ca.IsCA, ca.NotAfter.Sub(now), ca.PublicKeyAlgorithm)
	}
	if !bytes.Equal(first.CAPEM, readFile(t, first.CAFile)) {
		t.Fatal("CAPEM is not the CA file's content")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	serving := readCert(t, first.CertFile)
	for _, host := range devHosts {
		if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, CurrentTime: now}); err != nil {
			t.Errorf("authd's certificate for %s: %v", host, err)
		}
	}
	if info, err := os.Stat(first.KeyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("authd's key file: %v, mode %v; want 0600", err, info.Mode())
	}

	// A month later nothing changes.
	again, renewed, err := ensureTLS(dir, now.Add(30*24*time.Hour))
	if err != nil || renewed || !bytes.Equal(again.CAPEM, first.CAPEM) || !bytes.Equal(readFile(t, again.CertFile), readFile(t, first.CertFile)) {
		t.Fatalf("ensureTLS a month later: %v, renewed %v; want the same CA and certificate", err, renewed)
	}

	// A certificate that no longer covers localhost is replaced under the same CA.
	writeForeignCert(t, dir, first, "elsewhere.localhost")
	if _, renewed, err = ensureTLS(dir, now); err != nil || renewed {
		t.Fatalf("ensureTLS with a stale certificate: %v, renewed %v; want the CA kept", err, renewed)
	}
	if err := readCert(t, first.CertFile).VerifyHostname("localhost"); err != nil {
		t.Fatalf("the replaced certificate: %v", err)
	}

	// 29 days before the CA ends, both are new.
	late := ca.NotAfter.Add(-29 * 24 * time.Hour)
	renewedTLS, renewed, err := ensureTLS(dir, late)
	if err != nil || !renewed || bytes.Equal(renewedTLS.CAPEM, first.CAPEM) {
		t.Fatalf("ensureTLS 29 days before the CA ends: %v, renewed %v; want a new CA", err, renewed)
	}
	newRoots := x509.NewCertPool()
	newRoots.AddCert(readCert(t, renewedTLS.CAFile))
	if _, err := readCert(t, renewedTLS.CertFile).Verify(x509.VerifyOptions{Roots: newRoots, CurrentTime: late}); err != nil {
		t.Fatalf("the certificate after the CA's renewal: %v", err)
	}
}

// TestDevCAVouchesOnlyForLoopback: whoever trusts the dev CA in a browser trusts it for nothing but
// localhost and loopback addresses, even for certificates signed with its key.
func TestDevCAVouchesOnlyForLoopback(t *testing.T) {
	now := time.Now()
	ca, caKey, err := newDevCA(now)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for host, allowed := range map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true, "bank.example": false, "10.0.0.1": false} {
		der := signFor(t, ca, caKey, host, now)
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, CurrentTime: now})
		if (err == nil) != allowed {
			t.Errorf("a certificate for %s: Verify = %v, want allowed %v", host, err, allowed)
		}
	}
}

func signFor(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, host string, now time.Time) []byte {
	t.Helper()
	certPEM, _, err := webhookcert.NewServingCert(ca, caKey, host, []string{host}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	return block.Bytes
}

// writeForeignCert replaces authd's pair with one for host under the same CA.
func writeForeignCert(t *testing.T, dir string, files devTLS, host string) {
	t.Helper()
	ca, caKey, err := loadCA(files.CAFile, filepath.Join(dir, "ca.key"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := webhookcert.NewServingCert(ca, caKey, host, []string{host}, time.Now(), ca.NotAfter)
	if err != nil {
		t.Fatal(err)
	}
	if err := writePair(files.CertFile, certPEM, files.KeyFile, keyPEM); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
