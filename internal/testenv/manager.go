package testenv

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/internal/operator"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// Manager says how to run the manager in a test.
type Manager struct {
	Config      *rest.Config
	Scheme      *runtime.Scheme
	DatabaseURL string
	// Controllers, when set, runs the controllers.
	Controllers *controllers.Settings
	// Webhooks, when set, serves the admission webhooks where WebhookInstall (envtest's, after
	// the control plane started) tells the API server to call them.
	Webhooks       *webhooks.Settings
	WebhookInstall *envtest.WebhookInstallOptions
	// SMTP, when set, makes the controllers mail invitations through it.
	SMTP *mail.SMTPConfig
	Log  logr.Logger
}

// StartManager runs the controllers and the webhooks, as asked, wired by operator.Setup as
// cmd/manager wires them (without metrics, probes and the signing-key rotation, which the suites
// that need keys run by hand), until the returned stop function is called.
func StartManager(m Manager) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	pg, err := db.Connect(ctx, m.DatabaseURL, m.Log.WithName("db"))
	if err != nil {
		cancel()
		return nil, err
	}
	options := ctrl.Options{
		Scheme:                 m.Scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 m.Log,
	}
	if m.Webhooks != nil {
		options.WebhookServer = webhook.NewServer(webhook.Options{
			Host: m.WebhookInstall.LocalServingHost, Port: m.WebhookInstall.LocalServingPort, CertDir: m.WebhookInstall.LocalServingCertDir,
		})
	}
	mgr, err := ctrl.NewManager(m.Config, options)
	if err == nil {
		err = operator.Setup(ctx, mgr, pg, operator.Parts{Controllers: m.Controllers, Webhooks: m.Webhooks, SMTP: m.SMTP})
	}
	if err != nil {
		cancel()
		pg.Close()
		return nil, fmt.Errorf("setting up the manager: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			m.Log.Error(err, "Manager stopped with an error")
		}
		pg.Close()
	}, nil
}
