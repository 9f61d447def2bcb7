package webhookcert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// CAFile, CertFile and KeyFile are the files Ensure writes; the webhook server reads the last
	// two (controller-runtime's defaults).
	CAFile   = "ca.crt"
	CertFile = "tls.crt"
	KeyFile  = "tls.key"

	lifetime = 365 * 24 * time.Hour
	// renewBefore replaces a certificate this close to its expiry.
	renewBefore = 30 * 24 * time.Hour
)

// Ensure makes sure dir holds a CA and a serving certificate for hosts (DNS names or IP
// addresses) that stays valid for at least 30 more days, writing new ones when it does not. It
// returns the CA certificate, PEM-encoded, for the webhook configurations' caBundle.
func Ensure(dir string, hosts []string, now time.Time) ([]byte, error) {
	if ca, err := current(dir, hosts, now); err == nil {
		return ca, nil
	}
	caCert, caKey, caPEM, err := newCA(now)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := newServingCert(caCert, caKey, hosts, now)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	// The key goes first and the certificate last: the server's file watcher reloads on the
	// certificate, and must then find the matching key.
	for _, f := range []struct {
		name string
		data []byte
	}{{CAFile, caPEM}, {KeyFile, keyPEM}, {CertFile, certPEM}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.name, err)
		}
	}
	return caPEM, nil
}

// current returns the CA in dir when the serving certificate there is signed by it, covers every
// host and is not due for renewal.
func current(dir string, hosts []string, now time.Time) ([]byte, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate")
	}
	for _, host := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: now.Add(renewBefore)}); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tenancy-webhook-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("signing the CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func newServingCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "tenancy-webhook"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			template.IPAddresses = append(template.IPAddresses, ip)
		} else {
			template.DNSNames = append(template.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;update,resourceNames=tenancy-mutating-webhook-configuration;tenancy-validating-webhook-configuration

// Injector keeps CABundle in every webhook of the two named configurations. It is a manager
// Runnable: it injects at start, retrying until the configurations exist, then checks again every
// Interval, so that re-applied manifests get the bundle back.
type Injector struct {
	// Client reads without a cache: the manager may get and update only these two objects.
	Client         client.Client
	CABundle       []byte
	MutatingName   string
	ValidatingName string
	Interval       time.Duration
}

// NeedLeaderElection is false: every replica serves webhooks.
func (i *Injector) NeedLeaderElection() bool { return false }

// Start injects until ctx ends.
func (i *Injector) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("webhookcert")
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := i.Inject(ctx); err != nil {
			log.Error(err, "Injecting the webhook CA bundle")
		}
	}, i.Interval)
	return nil
}

// Inject sets the CA bundle where it differs.
func (i *Injector) Inject(ctx context.Context) error {
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := i.Client.Get(ctx, client.ObjectKey{Name: i.MutatingName}, mutating); err != nil {
		return fmt.Errorf("getting %s: %w", i.MutatingName, err)
	}
	changed := false
	for w := range mutating.Webhooks {
		changed = i.set(&mutating.Webhooks[w].ClientConfig) || changed
	}
	if changed {
		if err := i.Client.Update(ctx, mutating); err != nil {
			return fmt.Errorf("updating %s: %w", i.MutatingName, err)
		}
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := i.Client.Get(ctx, client.ObjectKey{Name: i.ValidatingName}, validating); err != nil {
		return fmt.Errorf("getting %s: %w", i.ValidatingName, err)
	}
	changed = false
	for w := range validating.Webhooks {
		changed = i.set(&validating.Webhooks[w].ClientConfig) || changed
	}
	if changed {
		if err := i.Client.Update(ctx, validating); err != nil {
			return fmt.Errorf("updating %s: %w", i.ValidatingName, err)
		}
	}
	return nil
}

func (i *Injector) set(cc *admissionregistrationv1.WebhookClientConfig) bool {
	if bytes.Equal(cc.CABundle, i.CABundle) {
		return false
	}
	cc.CABundle = i.CABundle
	return true
}
