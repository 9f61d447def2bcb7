package webhookcert

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// TestReplicasAgreeOnOneCertificate: replicas that start together against a real API server end
// up serving one pair, whichever wrote the Secret first, so one caBundle fits them all.
func TestReplicasAgreeOnOneCertificate(t *testing.T) {
	testenv.SkipIfShort(t, "a kube-apiserver")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := testenv.NewControlPlane()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: secretKey.Namespace}}); err != nil {
		t.Fatal(err)
	}

	const replicas = 4
	sources := make([]*Source, replicas)
	cas := make([][]byte, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for r := range replicas {
		sources[r] = newSource(c, hosts, time.Now())
		wg.Go(func() { cas[r], errs[r] = sources[r].Ensure(ctx) })
	}
	wg.Wait()
	for r := range replicas {
		if errs[r] != nil {
			t.Fatalf("replica %d: Ensure() = %v", r, errs[r])
		}
		if string(cas[r]) != string(cas[0]) || servingSerial(t, sources[r]) != servingSerial(t, sources[0]) {
			t.Errorf("replica %d serves another pair than replica 0", r)
		}
	}
}
