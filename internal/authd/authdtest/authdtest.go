// Package authdtest serves authd in the suites that run the whole system (test/selfservice,
// test/importer): over real HTTP, acting in Kubernetes with authd's own identity and RBAC.
package authdtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenancy-dev/tenancy/internal/authd"
)

// Options say how to serve authd.
type Options struct {
	// Config is authd's configuration.
	Config authd.Config
	// DatabaseURL is the database authd connects to, as the role tenancy_authd.
	DatabaseURL string
	// Kube is authd's identity in the control plane (testenv's AuthdUser) and Scheme its types.
	Kube   *rest.Config
	Scheme *runtime.Scheme
	// SigningKeysNamespace holds the signing keys' Secret, read every 200 ms.
	SigningKeysNamespace string
	Log                  logr.Logger
}

// Serve serves authd on listener until stop is called; stop waits for it to end.
func Serve(listener net.Listener, o Options) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	store, err := authd.OpenStore(ctx, o.DatabaseURL, "tenancy_authd")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening authd's store: %w", err)
	}
	fail := func(err error) (func(), error) {
		store.Close()
		cancel()
		return nil, err
	}
	kube, err := client.New(o.Kube, client.Options{Scheme: o.Scheme})
	if err != nil {
		return fail(err)
	}
	asCaller, err := authd.NewCallerClient(o.Kube, o.Scheme, kube.RESTMapper())
	if err != nil {
		return fail(err)
	}
	keys := &authd.KeySource{Reader: kube, Namespace: o.SigningKeysNamespace, Interval: 200 * time.Millisecond}
	server, err := authd.NewServer(o.Config, store, keys, authd.Kubernetes{Client: kube, AsCaller: asCaller}, o.Log)
	if err != nil {
		return fail(err)
	}
	ts := &httptest.Server{Listener: listener, Config: &http.Server{Handler: server.Handler()}}
	ts.Start()
	done := make(chan struct{})
	go func() { server.Run(ctx); close(done) }()
	return func() {
		cancel()
		<-done
		ts.Close()
		store.Close()
	}, nil
}
