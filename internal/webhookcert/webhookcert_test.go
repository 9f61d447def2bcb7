package webhookcert

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnsureMakesReusesAndRenews(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	hosts := []string{"localhost", "127.0.0.1", "tenancy-webhook-service.tenancy-system.svc"}

	ca, err := Ensure(dir, hosts, now)
	if err != nil {
		t.Fatalf("Ensure() = %v", err)
	}
	for _, f := range []string{CAFile, CertFile, KeyFile} {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, info.Mode().Perm())
		}
	}

	again, err := Ensure(dir, hosts, now.Add(24*time.Hour))
	if err != nil || string(again) != string(ca) {
		t.Fatalf("a second Ensure must reuse the valid certificate (err %v)", err)
	}
	renewed, err := Ensure(dir, hosts, now.Add(lifetime-renewBefore+time.Hour))
	if err != nil || string(renewed) == string(ca) {
		t.Fatalf("a certificate within %s of expiry must be replaced (err %v)", renewBefore, err)
	}
	other, err := Ensure(dir, append(hosts, "webhook.example.com"), now)
	if err != nil || string(other) == string(renewed) {
		t.Fatalf("a new host must give a new certificate (err %v)", err)
	}
}

func TestServingCertificateIsTrustedThroughTheCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := Ensure(dir, []string{"localhost", "127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	server.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	server.StartTLS()
	defer server.Close()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	_, port, _ := net.SplitHostPort(server.Listener.Addr().String())
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
