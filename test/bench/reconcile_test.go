// Package bench measures Tenancy against the targets of docs/design.md; `make bench` runs it and the
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
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// projectsPerRound is how many Projects one round creates and waits for.
const projectsPerRound = 500

// inputWorkers is how many goroutines create the operator's input.
const inputWorkers = 16

// ceilingWorkers is how many goroutines measure the ceiling: enough to saturate the API server
// (FACTS.md saw its throughput flatten between 16 and 64).
const ceilingWorkers = 64

// BenchmarkProjectsReady measures how fast the operator makes Projects Ready, against the ceiling
// of the same API server: a Ready Project costs three writes (its create, the finalizer patch and
// the status patch), so the ceiling is how many Projects per second one client through doing those three writes itself (with as many workers as saturate the API
// server), measured before the manager starts.
func BenchmarkProjectsReady(b *testing.B) {
	ctx := context.Background()
	_, cfg, database := startControlPlane(b, "bench")

	scheme := testenv.Scheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	ceiling := projectCeiling(b, c)

	stop, err := testenv.StartManager(testenv.Manager{
		Config: cfg, Scheme: scheme, DatabaseURL: database.URL, Log: logr.Discard(),
		Controllers: &controllers.Settings{
			ResyncPeriod:        time.Hour,
			PublicURL:           "http://localhost:8090",
			InvitationTTL:       time.Hour,
			APIKeyRotationGrace: time.Hour,
			OperatorNamespace:   "tenancy-system",
			Options:             controller.Options{MaxConcurrentReconciles: 16},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer stop()

	var readyRates []float64
	for i := 0; b.Loop(); i++ {
		org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)}}
		if err := c.Create(ctx, org); err != nil {
			b.Fatal(err)
		}
		waitReady(b, c, org)

		start := time.Now()
		parallel(b, inputWorkers, projectsPerRound, func(n int) error {
			return c.Create(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", n), Namespace: org.Name}})
		})
		for n := range projectsPerRound {
			waitReady(b, c, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", n), Namespace: org.Name}})
		}
		readyRates = append(readyRates, projectsPerRound/time.Since(start).Seconds())

	}
	ready := mean(readyRates)
	b.ReportMetric(ready, "ready-projects/s")
	b.ReportMetric(ceiling, "ceiling-projects/s")
	b.ReportMetric(100*ready/ceiling, "%-of-ceiling")
}

// projectCeiling creates Projects, adds a finalizer and writes a Ready status itself — the three
// writes the operator makes per Project — and returns Projects per second. It then removes them.
func projectCeiling(b *testing.B, c client.Client) float64 {
	b.Helper()
	ctx := context.Background()
	const ns = "ceiling"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		b.Fatal(err)
	}
	project := func(n int) *tenancyv1.Project {
		return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", n), Namespace: ns}}
	}
	start := time.Now()
	parallel(b, ceilingWorkers, projectsPerRound, func(n int) error {
		p := project(n)
		if err := c.Create(ctx, p); err != nil {
			return err
		}
		if err := c.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":["tenancy.dev/finalizer"]}}`))); err != nil {
			return err
		}
		status := fmt.Sprintf(`{"status":{"observedGeneration":1,"id":"x","conditions":[{"type":"Ready","status":"True","reason":"Reconciled","message":"Reconciled","lastTransitionTime":%q}]}}`,
			time.Now().UTC().Format(time.RFC3339))
		return c.Status().Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(status)))
	})
	rate := projectsPerRound / time.Since(start).Seconds()
	parallel(b, ceilingWorkers, projectsPerRound, func(n int) error {
		p := project(n)
		if err := c.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))); err != nil {
			return err
		}
		return c.Delete(ctx, p)
	})
	return rate
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

// parallel runs do(0..n-1) on workers goroutines and fails the benchmark on an error.
func parallel(b *testing.B, workers, n int, do func(int) error) {
	b.Helper()
	next := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range workers {
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
