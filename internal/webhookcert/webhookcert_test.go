package webhookcert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

var (
	secretKey = client.ObjectKey{Namespace: "tenancy-system", Name: "webhook-server-cert"}
	hosts     = []string{"localhost", "127.0.0.1", "tenancy-webhook-service.tenancy-system.svc"}
)

func newSource(c client.Client, hosts []string, now time.Time) *Source {
	return &Source{Client: c, Secret: secretKey, Hosts: hosts, Now: func() time.Time { return now }}
}

func fakeClient(t *testing.T) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).Build()
}

func servingSerial(t *testing.T, s *Source) string {
	t.Helper()
	pair, err := s.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

func TestSourceMakesReusesAndRenews(t *testing.T) {
	ctx := context.Background()
	c := fakeClient(t)
	now := time.Now()

	first := newSource(c, hosts, now)
	if _, err := first.GetCertificate(nil); err == nil {
		t.Fatal("GetCertificate before Ensure must fail, not serve nothing")
	}
	ca, err := first.Ensure(ctx)
	if err != nil {
		t.Fatalf("Ensure() = %v", err)
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, secretKey, secret); err != nil {
		t.Fatalf("the Secret was not written: %v", err)
	}
	if secret.Type != corev1.SecretTypeTLS || len(secret.Data[corev1.TLSCertKey]) == 0 || len(secret.Data[caKeyKey]) == 0 {
		t.Fatalf("Secret %s: type %s, keys %v; want a kubernetes.io/tls Secret with the CA key", secretKey, secret.Type, keys(secret.Data))
	}

	// A second replica, a day later, serves the same pair.
	second := newSource(c, hosts, now.Add(24*time.Hour))
	again, err := second.Ensure(ctx)
	if err != nil || string(again) != string(ca) || servingSerial(t, second) != servingSerial(t, first) {
		t.Fatalf("a second replica must load the valid pair, not make its own (err %v)", err)
	}

	// Near the pair's expiry: a new pair from the same CA, so the caBundle stays valid.
	late := newSource(c, hosts, now.Add(certLifetime-renewBefore+time.Hour))
	renewed, err := late.Ensure(ctx)
	if err != nil || string(renewed) != string(ca) || servingSerial(t, late) == servingSerial(t, first) {
		t.Fatalf("a pair within %s of expiry must be replaced by one from the same CA (err %v)", renewBefore, err)
	}

	// A host the pair does not cover: a new pair, same CA.
	wider := newSource(c, append(hosts, "webhook.example.com"), now)
	if ca2, err := wider.Ensure(ctx); err != nil || string(ca2) != string(ca) {
		t.Fatalf("a new host must give a new pair from the same CA (err %v)", err)
	}
	pair, _ := wider.GetCertificate(nil)
	if leaf, _ := x509.ParseCertificate(pair.Certificate[0]); leaf.VerifyHostname("webhook.example.com") != nil {
		t.Error("the new pair does not cover the new host")
	}

	// A CA too close to its end to outlive a new pair is replaced.
	ancient := newSource(c, hosts, now.Add(caLifetime-certLifetime+time.Hour))
	if ca3, err := ancient.Ensure(ctx); err != nil || string(ca3) == string(ca) {
		t.Fatalf("a CA that cannot outlive a new pair must be replaced (err %v)", err)
	}
}

// TestDamagedSecretIsReplaced: a Secret someone emptied or garbled gets a working pair again.
func TestDamagedSecretIsReplaced(t *testing.T) {
	ctx := context.Background()
	c := fakeClient(t)
	damaged := &corev1.Secret{}
	damaged.Name, damaged.Namespace = secretKey.Name, secretKey.Namespace
	damaged.Data = map[string][]byte{corev1.TLSCertKey: []byte("not a certificate"), caCertKey: []byte("garbage")}
	if err := c.Create(ctx, damaged); err != nil {
		t.Fatal(err)
	}
	s := newSource(c, hosts, time.Now())
	if _, err := s.Ensure(ctx); err != nil {
		t.Fatalf("Ensure over a damaged Secret = %v", err)
	}
	if _, err := s.GetCertificate(nil); err != nil {
		t.Fatal(err)
	}
}

func TestServingCertificateIsTrustedThroughTheCA(t *testing.T) {
	s := newSource(fakeClient(t), []string{"localhost", "127.0.0.1"}, time.Now())
	ca, err := s.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// As the webhook server is configured: GetCertificate alone (httptest would add its own pair).
	listener, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: s.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })}
	go func() { _ = server.Serve(listener) }()
	defer func() { _ = server.Close() }()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	_, port, _ := net.SplitHostPort(listener.Addr().String())
	for _, host := range []string{"localhost", "127.0.0.1"} {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		resp, err := client.Get("https://" + net.JoinHostPort(host, port))
		if err != nil {
			t.Fatalf("GET via %s: %v", host, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("GET via %s: status %d", host, resp.StatusCode)
		}
	}
}

func keys(data map[string][]byte) []string {
	var names []string
	for k := range data {
		names = append(names, k)
	}
	return names
}
