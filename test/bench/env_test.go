package bench

import (
	"context"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// startControlPlane starts envtest, after prepare has adjusted it (to serve webhooks, say), and a
// fresh database whose name starts with databasePrefix; both go when b ends. The returned config
// lets one client make the thousands of requests per second the benchmarks need.
func startControlPlane(b *testing.B, databasePrefix string, prepare ...func(*envtest.Environment) error) (*envtest.Environment, *rest.Config, *testenv.Database) {
	b.Helper()
	ctx := context.Background()
	env, err := testenv.NewControlPlane()
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range prepare {
		if err := p(env); err != nil {
			b.Fatal(err)
		}
	}
	cfg, err := env.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Stop() })
	cfg.QPS, cfg.Burst = 5000, 10000
	database, err := testenv.NewDatabase(ctx, databasePrefix)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = database.Drop(ctx) })
	return env, cfg, database
}
