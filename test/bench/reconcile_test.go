// Package bench measures Tenancy against the targets of DESIGN.md; `make bench` runs it and the
// figures go into docs/benchmarks.md.
package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// projectsPerRound is how many Projects one round creates and waits for.
const projectsPerRound = 500

// clientWorkers is how many goroutines write to the API server, for the operator's input and for
// the ceiling alike.
const clientWorkers = 16

// BenchmarkProjectsReady measures how fast the operator makes Projects Ready, against the ceiling
// of the same API server: a Ready Project costs three writes (its create, the finalizer patch
// and the status patch), so the ceiling is what one client with the same workers gets through
// for three such writes per object on a kind no controller watches.
func BenchmarkProjectsReady(b *testing.B) {
	ctx := context.Background()
	env, err := testenv.NewControlPlane()
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	cfg.QPS, cfg.Burst = 5000, 10000

	database, err := testenv.NewDatabase(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = database.Drop(ctx) }()

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tenancyv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	stop, err := testenv.StartManager(cfg, scheme, database.URL, controllers.Settings{
		ResyncPeriod:        time.Hour,
		PublicURL:           "http://localhost:8090",
		InvitationTTL:       time.Hour,
		APIKeyRotationGrace: time.Hour,
		OperatorNamespace:   "tenancy-system",
		Options:             controller.Options{MaxConcurrentReconciles: 16},
	}, logr.Discard())
	if err != nil {
		b.Fatal(err)
	}
	defer stop()

	var readyRates, ceilingRates []float64
	for i := 0; b.Loop(); i++ {
		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)}}
		if err := c.Create(ctx, org); err != nil {
			b.Fatal(err)
		}
		waitReady(b, c, org)

		start := time.Now()
		parallel(b, projectsPerRound, func(n int) error {
			return c.Create(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", n), Namespace: org.Name}})
		})
		for n := range projectsPerRound {
			waitReady(b, c, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", n), Namespace: org.Name}})
		}
		readyRates = append(readyRates, projectsPerRound/time.Since(start).Seconds())

		ns := fmt.Sprintf("ceiling-%d", i)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		parallel(b, projectsPerRound, func(n int) error {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", n), Namespace: ns}}
			if err := c.Create(ctx, cm); err != nil {
				return err
			}
			for _, patch := range []string{`{"metadata":{"finalizers":["tenancy.dev/bench"]}}`, `{"data":{"status":"Ready"}}`} {
				if err := c.Patch(ctx, cm, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
					return err
				}
			}
			return nil
		})
		ceilingRates = append(ceilingRates, projectsPerRound/time.Since(start).Seconds())
	}
	ready, ceiling := mean(readyRates), mean(ceilingRates)
	b.ReportMetric(ready, "ready-projects/s")
	b.ReportMetric(ceiling, "ceiling-objects/s")
	b.ReportMetric(100*ready/ceiling, "%-of-ceiling")
}

func waitReady(b *testing.B, c client.Client, obj tenancyv1.Object) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err == nil &&
			meta.IsStatusConditionTrue(obj.CommonStatusRef().Conditions, tenancyv1.ReadyCondition) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s %s not Ready after 2 minutes: %+v", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), obj.CommonStatusRef().Conditions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parallel runs do(0..n-1) on clientWorkers goroutines and fails the benchmark on an error.
func parallel(b *testing.B, n int, do func(int) error) {
	b.Helper()
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range clientWorkers {
		wg.Go(func() {
			for i := range next {
				if err := do(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func mean(xs []float64) float64 {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}
