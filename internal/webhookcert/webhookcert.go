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
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// The data keys of the Secret: the serving pair under the kubernetes.io/tls keys, the CA
	// certificate (for the caBundle) and the CA key (so that any replica can renew the pair).
	caCertKey = "ca.crt"
	caKeyKey  = "ca.key"

	// caLifetime is long because a new CA changes the caBundle, which replicas serving the old
	// pair would fail against until they reload; the serving pair renews every year, same CA.
	caLifetime   = 10 * 365 * 24 * time.Hour
	certLifetime = 365 * 24 * time.Hour
	// renewBefore replaces a certificate this close to its expiry.
	renewBefore = 30 * 24 * time.Hour
)

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update

// Source keeps the webhook server's CA and serving certificate in one Secret in the operator's
// namespace, so that every replica serves the same certificate and the caBundle fits them all.
// The first replica to start makes them; any replica renews the pair when it is due or no longer
// covers Hosts. It serves the pair from memory (GetCertificate): the pods need no writable volume.
// As a manager Runnable it re-reads the Secret every Interval, picking up another replica's
// renewal, and keeps the CA in the webhook configurations through Injector.
type Source struct {
	// Client reads without a cache: the manager caches no Secrets of its own namespace.
	Client   client.Client
	Secret   client.ObjectKey
	Hosts    []string
	Interval time.Duration
	Injector *Injector
	// Now is time.Now unless a test sets it.
	Now func() time.Time

	pair atomic.Pointer[tls.Certificate]
}

// Ensure loads the Secret's pair, making or renewing it when needed, and returns the CA
// certificate, PEM-encoded. It retries when another replica wrote the Secret at the same time.
func (s *Source) Ensure(ctx context.Context) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		caPEM, err := s.ensureOnce(ctx)
		if (apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err)) && attempt < 5 {
			continue
		}
		return caPEM, err
	}
}

func (s *Source) ensureOnce(ctx context.Context) ([]byte, error) {
	now := s.now()
	secret := &corev1.Secret{}
	err := s.Client.Get(ctx, s.Secret, secret)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Secret %s: %w", s.Secret, err)
	}
	if exists {
		if pair, err := usablePair(secret.Data, s.Hosts, now); err == nil {
			s.pair.Store(pair)
			return secret.Data[caCertKey], nil
		}
	}
	ca, caKey, caPEM, caKeyPEM, err := reusableCA(secret.Data, now)
	if err != nil {
		if ca, caKey, caPEM, caKeyPEM, err = newCA(now); err != nil {
			return nil, err
		}
	}
	certPEM, keyPEM, err := NewServingCert(ca, caKey, "tenancy-webhook", s.Hosts, now, now.Add(certLifetime))
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	secret.Name, secret.Namespace = s.Secret.Name, s.Secret.Namespace
	secret.Type = corev1.SecretTypeTLS
	secret.Labels = map[string]string{"app.kubernetes.io/name": "tenancy", "app.kubernetes.io/component": "webhook-certificate"}
	secret.Data = map[string][]byte{
		corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, caCertKey: caPEM, caKeyKey: caKeyPEM,
	}
	// Create and Update fail on a concurrent write (AlreadyExists, Conflict): Ensure then reads
	// the other replica's certificate instead of overwriting it.
	if exists {
		err = s.Client.Update(ctx, secret)
	} else {
		err = s.Client.Create(ctx, secret)
	}
	if err != nil {
		return nil, fmt.Errorf("writing Secret %s: %w", s.Secret, err)
	}
	s.pair.Store(&pair)
	return caPEM, nil
}

// GetCertificate is the webhook server's tls.Config.GetCertificate.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	pair := s.pair.Load()
	if pair == nil {
		return nil, errors.New("the webhook certificate is not loaded yet")
	}
	return pair, nil
}

// NeedLeaderElection is false: every replica serves webhooks.
func (s *Source) NeedLeaderElection() bool { return false }

// Start keeps the pair and the caBundle current until ctx ends.
func (s *Source) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("webhookcert")
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		caPEM, err := s.Ensure(ctx)
		if err != nil {
			log.Error(err, "Loading the webhook certificate", "secret", s.Secret.String())
			return
		}
		s.Injector.CABundle = caPEM
		if err := s.Injector.Inject(ctx); err != nil {
			log.Error(err, "Injecting the webhook CA bundle")
		}
	}, s.Interval)
	return nil
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// usablePair is the Secret's serving pair when it is signed by the Secret's CA, covers every
// host and is not due for renewal.
func usablePair(data map[string][]byte, hosts []string, now time.Time) (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data[caCertKey]) {
		return nil, errors.New("no CA certificate")
	}
	for _, host := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: now.Add(renewBefore)}); err != nil {
			return nil, err
		}
	}
	return &pair, nil
}

// reusableCA is the Secret's CA when it can sign a new serving pair that it outlives.
func reusableCA(data map[string][]byte, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte, error) {
	certBlock, _ := pem.Decode(data[caCertKey])
	keyBlock, _ := pem.Decode(data[caKeyKey])
	if certBlock == nil || keyBlock == nil {
		return nil, nil, nil, nil, errors.New("no CA")
	}
	ca, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if !ca.IsCA || !key.PublicKey.Equal(ca.PublicKey) || ca.NotAfter.Before(now.Add(certLifetime)) {
		return nil, nil, nil, nil, errors.New("the CA cannot sign a new serving certificate")
	}
	return ca, key, data[caCertKey], data[caKeyKey], nil
}

func newCA(now time.Time) (cert *x509.Certificate, key *ecdsa.PrivateKey, certPEM, keyPEM []byte, err error) {
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          SerialNumber(),
		Subject:               pkix.Name{CommonName: "tenancy-webhook-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("signing the CA: %w", err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		return nil, nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// NewServingCert signs an ECDSA P-256 serving certificate for hosts (DNS names or IP addresses)
// with ca, valid from an hour before now until notAfter, and answers it and its key in PEM.
func NewServingCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, commonName string, hosts []string, now, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber: SerialNumber(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
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

// SerialNumber is a random certificate serial number of 127 bits.
func SerialNumber() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;update,resourceNames=tenancy-mutating-webhook-configuration;tenancy-validating-webhook-configuration

// Injector keeps CABundle in every webhook of the two named configurations; Source calls it at
// start (until the configurations exist) and then every Interval, so that re-applied manifests
// get the bundle back.
type Injector struct {
	// Client reads without a cache: the manager may get and update only these two objects.
	Client         client.Client
	CABundle       []byte
	MutatingName   string
	ValidatingName string
}

// Inject sets the CA bundle where it differs. Replicas starting together update the same objects:
// a conflict is read again and retried, not reported.
func (i *Injector) Inject(ctx context.Context) error {
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := i.Client.Get(ctx, client.ObjectKey{Name: i.MutatingName}, mutating); err != nil {
			return err
		}
		changed := false
		for w := range mutating.Webhooks {
			changed = i.set(&mutating.Webhooks[w].ClientConfig) || changed
		}
		if !changed {
			return nil
		}
		return i.Client.Update(ctx, mutating)
	}); err != nil {
		return fmt.Errorf("injecting into %s: %w", i.MutatingName, err)
	}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := i.Client.Get(ctx, client.ObjectKey{Name: i.ValidatingName}, validating); err != nil {
			return err
		}
		changed := false
		for w := range validating.Webhooks {
			changed = i.set(&validating.Webhooks[w].ClientConfig) || changed
		}
		if !changed {
			return nil
		}
		return i.Client.Update(ctx, validating)
	}); err != nil {
		return fmt.Errorf("injecting into %s: %w", i.ValidatingName, err)
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
