package testenv

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// StartManager runs the controllers against cfg and databaseURL, wired as cmd/manager wires them
// (without metrics and probes), until the returned stop function is called.
func StartManager(cfg *rest.Config, scheme *runtime.Scheme, databaseURL string, settings controllers.Settings, log logr.Logger) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	pg, err := db.Connect(ctx, databaseURL, log.WithName("db"))
	if err != nil {
		cancel()
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 log,
	})
	if err == nil {
		err = mgr.Add(pg)
	}
	if err == nil {
		err = controllers.SetupWithManager(ctx, mgr, pg, settings)
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
			log.Error(err, "Manager stopped with an error")
		}
		pg.Close()
	}, nil
}
