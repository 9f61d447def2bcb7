package deploy_test

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// leaseName is the manager's LeaderElectionID (cmd/manager).
const leaseName = "manager.tenancy.dev"

// TestLeaderElectionRole: with nothing but config/default's leader-election Role and binding, the
// manager's service account takes the Lease, hands it over when a leader stops, and can touch no
// other Lease.
func TestLeaderElectionRole(t *testing.T) {
	needsControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const namespace = "tenancy-system"
	createNamespace(ctx, t, admin, namespace)
	installed := 0
	for _, obj := range build(t, "default") {
		if obj.GetName() != "tenancy-leader-election-role" && obj.GetName() != "tenancy-leader-election-rolebinding" {
			continue
		}
		if err := admin.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s %s: %v", obj.GetKind(), nameOf(obj), err)
		}
		installed++
	}
	if installed != 2 {
		t.Fatalf("config/default has %d of the leader-election Role and RoleBinding", installed)
	}
	manager, err := testenv.ManagerUser(controlPlane)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(manager.Config())
	if err != nil {
		t.Fatal(err)
	}

	first := startCandidate(ctx, t, kube, namespace, "first")
	awaitLeading(ctx, t, first, "the first candidate never took the Lease: config/rbac's Role does not let the manager get or create it")
	second := startCandidate(ctx, t, kube, namespace, "second")
	first.stop() // releases the Lease, as the manager does on shutdown (LeaderElectionReleaseOnCancel)
	awaitLeading(ctx, t, second, "the second candidate never took over the released Lease: the Role does not let the manager update it")
	lease := &coordinationv1.Lease{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: namespace, Name: leaseName}, lease); err != nil {
		t.Fatal(err)
	}
	if holder := lease.Spec.HolderIdentity; holder == nil || *holder != "second" {
		t.Errorf("the Lease is held by %v, want second", holder)
	}

	_, err = kube.CoordinationV1().Leases(namespace).Get(ctx, "someone-elses-lease", metav1.GetOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("the manager may read a Lease other than %s (err %v); the Role should name it", leaseName, err)
	}
	_, err = kube.CoordinationV1().Leases("default").Get(ctx, leaseName, metav1.GetOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("the manager may read Leases outside %s (err %v)", namespace, err)
	}
}

// candidate is one manager replica's leader election.
type candidate struct {
	leading chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
}

func startCandidate(ctx context.Context, t *testing.T, kube kubernetes.Interface, namespace, identity string) *candidate {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	c := &candidate{leading: make(chan struct{}), done: make(chan struct{})}
	c.stop = func() { stop(); <-c.done }
	t.Cleanup(c.stop)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: leaseName},
			Client:     kube.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		},
		LeaseDuration:   4 * time.Second,
		RenewDeadline:   3 * time.Second,
		RetryPeriod:     500 * time.Millisecond,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(c.leading) },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { elector.Run(runCtx); close(c.done) }()
	return c
}

// awaitLeading waits for c to lead. The deadline is far above the few retry periods a lease
// change takes, so that only a refusal makes it pass.
func awaitLeading(ctx context.Context, t *testing.T, c *candidate, failure string) {
	t.Helper()
	select {
	case <-c.leading:
	case <-time.After(30 * time.Second):
		t.Fatal(failure)
	case <-ctx.Done():
		t.Fatal(failure)
	}
}
