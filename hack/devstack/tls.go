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
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/tenancy-dev/tenancy/internal/webhookcert"
)

const (
	// devCertLifetime is the life of the dev CA and of authd's certificate.
	devCertLifetime = 365 * 24 * time.Hour
	// devCertRenewBefore replaces a certificate this close to its end.
	devCertRenewBefore = 30 * 24 * time.Hour
)

// devHosts are the names authd's certificate covers: the issuer's host and loopback.
var devHosts = []string{"localhost", "127.0.0.1", "::1"}

// devTLS is make dev's certificate authority and authd's serving certificate, as files in the
// state directory: authd serves the pair, kube-apiserver, curl and kubectl trust CAFile.
type devTLS struct {
	CAFile, CertFile, KeyFile string
	CAPEM                     []byte
}

// ensureTLS keeps a CA (ca.crt, ca.key) and authd's certificate for devHosts (authd.crt,
// authd.key) in dir. Files of an earlier run are reused while they are valid for more than
// devCertRenewBefore, so that a CA trusted in a browser stays trusted; a new CA means a new
// certificate.
func ensureTLS(dir string, now time.Time) (devTLS, bool, error) {
	t := devTLS{
		CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "authd.crt"), KeyFile: filepath.Join(dir, "authd.key"),
	}
	caKeyFile := filepath.Join(dir, "ca.key")
	ca, caKey, err := loadCA(t.CAFile, caKeyFile, now)
	renewed := err != nil
	if renewed {
		if ca, caKey, err = newDevCA(now); err != nil {
			return t, false, err
		}
		keyDER, err := x509.MarshalECPrivateKey(caKey)
		if err != nil {
			return t, false, err
		}
		if err := writePair(t.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
			caKeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})); err != nil {
			return t, false, err
		}
	}
	t.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	if renewed || !servingUsable(t.CertFile, t.KeyFile, ca, now) {
		notAfter := now.Add(devCertLifetime)
		if ca.NotAfter.Before(notAfter) {
			notAfter = ca.NotAfter // authd's certificate ends with the CA at the latest
		}
		certPEM, keyPEM, err := webhookcert.NewServingCert(ca, caKey, "localhost", devHosts, now, notAfter)
		if err != nil {
			return t, false, fmt.Errorf("signing authd's certificate: %w", err)
		}
		if err := writePair(t.CertFile, certPEM, t.KeyFile, keyPEM); err != nil {
			return t, false, err
		}
	}
	return t, renewed, nil
}

// client is an HTTP client that trusts the dev CA.
func (t devTLS) client() *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(t.CAPEM)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
}

// loadCA reads the CA of an earlier run; an error means it must be made anew.
func loadCA(certFile, keyFile string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile) // also checks that the key is the certificate's
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !ca.IsCA || ca.NotAfter.Before(now.Add(devCertRenewBefore)) {
		return nil, nil, errors.New("not a usable CA")
	}
	return ca, key, nil
}

// servingUsable reports whether the pair in certFile and keyFile chains to ca, covers devHosts
// and stays valid for more than devCertRenewBefore.
func servingUsable(certFile, keyFile string, ca *x509.Certificate, now time.Time) bool {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return false
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now.Add(devCertRenewBefore)}); err != nil {
		return false
	}
	for _, h := range devHosts {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// newDevCA makes the CA: ECDSA P-256, for devCertLifetime, and constrained to loopback names, so
// that a browser told to trust it trusts it for nothing else.
func newDevCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber:                webhookcert.SerialNumber(),
		Subject:                     pkix.Name{Organization: []string{"Tenancy make dev"}, CommonName: "Tenancy dev CA"},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(devCertLifetime),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         []string{"localhost"},
		PermittedIPRanges: []*net.IPNet{
			{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)},
			{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the dev CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// writePair writes a certificate (readable by all) and its private key (by the owner only), both
// in PEM.
func writePair(certFile string, certPEM []byte, keyFile string, keyPEM []byte) error {
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(certFile, certPEM, 0o644)
}
