package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/jackc/pgx/v5/pgconn"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

func TestRunPhasesStopsAtTheFirstErrorAndKeepsTheSoonestRequeue(t *testing.T) {
	type scope struct{ ran []string }
	boom := errors.New("boom")
	step := func(name string, requeue time.Duration, err error) phase[*scope] {
		return func(_ context.Context, s *scope) (ctrl.Result, error) {
			s.ran = append(s.ran, name)
			return ctrl.Result{RequeueAfter: requeue}, err
		}
	}

	s := &scope{}
	result, err := runPhases(context.Background(), s,
		step("namespace", 0, nil), step("rbac", 3*time.Second, nil), step("row", 2*time.Second, nil),
		step("counts", 10*time.Second, boom), step("never", time.Millisecond, nil))
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want the failing phase's", err)
	}
	if want := []string{"namespace", "rbac", "row", "counts"}; !slices.Equal(s.ran, want) {
		t.Errorf("ran %v, want %v: a phase builds on the ones before, so none runs after a failure", s.ran, want)
	}
	if result.RequeueAfter != 2*time.Second {
		t.Errorf("requeue after %s, want the lowest non-zero one, 2s", result.RequeueAfter)
	}

	s = &scope{}
	result, err = runPhases(context.Background(), s, step("a", 0, nil), step("b", 0, nil))
	if err != nil || result.RequeueAfter != 0 || len(s.ran) != 2 {
		t.Errorf("phases without requeue: ran %v, result %+v, error %v; want both, no requeue, no error", s.ran, result, err)
	}
}

// projectAt is a Project at generation gen that last observed observed, with the given conditions.
func projectAt(gen, observed int64, conditions ...string) *tenancyv1.Project {
	p := &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "acme", Generation: gen}}
	p.Status.ObservedGeneration = observed
	for _, c := range conditions {
		p.Status.Conditions = append(p.Status.Conditions, metav1.Condition{Type: c, Status: metav1.ConditionTrue, Reason: "Before"})
	}
	return p
}

// wantCondition fails unless obj has condition condType with status and reason, for its generation.
func wantCondition(t *testing.T, obj tenancyv1.Object, condType string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	c := meta.FindStatusCondition(obj.CommonStatusRef().Conditions, condType)
	switch {
	case c == nil:
		t.Errorf("no %s condition, want %s (%s)", condType, status, reason)
	case c.Status != status || c.Reason != reason || c.ObservedGeneration != obj.GetGeneration():
		t.Errorf("%s = %s (%s) for generation %d, want %s (%s) for generation %d",
			condType, c.Status, c.Reason, c.ObservedGeneration, status, reason, obj.GetGeneration())
	}
}

func wantNoCondition(t *testing.T, obj tenancyv1.Object, condType string) {
	t.Helper()
	if c := meta.FindStatusCondition(obj.CommonStatusRef().Conditions, condType); c != nil {
		t.Errorf("%s is still there (%s, %s); kstatus wants it only while true", condType, c.Status, c.Reason)
	}
}

// wantJittered fails unless d is within the jitter of base: base to base + 10%.
func wantJittered(t *testing.T, d, base time.Duration) {
	t.Helper()
	if d < base || d > base+base/10 {
		t.Errorf("requeue after %s, want %s plus at most 10%%", d, base)
	}
}

func TestFinishReconcileMakesASuccessReady(t *testing.T) {
	const resync = time.Minute
	p := projectAt(3, 2, tenancyv1.ReconcilingCondition, tenancyv1.StalledCondition)

	result, err := finishReconcile(p, ctrl.Result{}, nil, resync)

	if err != nil {
		t.Fatal(err)
	}
	wantCondition(t, p, tenancyv1.ReadyCondition, metav1.ConditionTrue, tenancyv1.ReconciledReason)
	wantNoCondition(t, p, tenancyv1.ReconcilingCondition)
	wantNoCondition(t, p, tenancyv1.StalledCondition)
	if p.Status.ObservedGeneration != 3 {
		t.Errorf("observedGeneration %d, want 3: kstatus reads Current only for the observed generation", p.Status.ObservedGeneration)
	}
	wantJittered(t, result.RequeueAfter, resync)
	if o := outcomeOf(p); o != (reconcileOutcome{state: tenancyv1.ReadyCondition, reason: tenancyv1.ReconciledReason}) {
		t.Errorf("outcome %+v, want Ready", o)
	}

	result, _ = finishReconcile(projectAt(1, 1), ctrl.Result{RequeueAfter: time.Second}, nil, resync)
	if result.RequeueAfter != time.Second {
		t.Errorf("requeue after %s, want the phases' sooner 1s", result.RequeueAfter)
	}
}

func TestFinishReconcileStallsWithoutRetrying(t *testing.T) {
	const resync = time.Minute
	p := projectAt(4, 3, tenancyv1.ReconcilingCondition)

	result, err := finishReconcile(p, ctrl.Result{RequeueAfter: time.Second},
		fmt.Errorf("phase: %w", stalled(tenancyv1.SecretConflictReason, "Secret %s exists", "web-apikey")), resync)

	if err != nil {
		t.Errorf("error %v: a stall is not retried with backoff", err)
	}
	wantCondition(t, p, tenancyv1.ReadyCondition, metav1.ConditionFalse, tenancyv1.SecretConflictReason)
	wantCondition(t, p, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.SecretConflictReason)
	wantNoCondition(t, p, tenancyv1.ReconcilingCondition)
	if msg := meta.FindStatusCondition(p.Status.Conditions, tenancyv1.StalledCondition).Message; msg != "Secret web-apikey exists" {
		t.Errorf("Stalled message %q, want the stall's own", msg)
	}
	if p.Status.ObservedGeneration != 4 {
		t.Errorf("observedGeneration %d, want 4: the decision on this generation is made, so kstatus says Failed", p.Status.ObservedGeneration)
	}
	wantJittered(t, result.RequeueAfter, resync)
	if o := outcomeOf(p); o != (reconcileOutcome{state: tenancyv1.StalledCondition, reason: tenancyv1.SecretConflictReason}) {
		t.Errorf("outcome %+v, want Stalled", o)
	}
}

func TestFinishReconcileWaitsAsReconciling(t *testing.T) {
	p := projectAt(2, 1, tenancyv1.StalledCondition)

	result, err := finishReconcile(p, ctrl.Result{}, waiting(tenancyv1.OrganizationNotReadyReason, "no row yet"), time.Hour)

	if err != nil {
		t.Errorf("error %v: a wait is not a failure", err)
	}
	wantCondition(t, p, tenancyv1.ReadyCondition, metav1.ConditionFalse, tenancyv1.OrganizationNotReadyReason)
	wantCondition(t, p, tenancyv1.ReconcilingCondition, metav1.ConditionTrue, tenancyv1.OrganizationNotReadyReason)
	wantNoCondition(t, p, tenancyv1.StalledCondition)
	if p.Status.ObservedGeneration != 1 {
		t.Errorf("observedGeneration %d, want 1 kept: this generation is not done", p.Status.ObservedGeneration)
	}
	wantJittered(t, result.RequeueAfter, waitDelay)

	result, _ = finishReconcile(projectAt(1, 1), ctrl.Result{RequeueAfter: time.Second}, waiting("X", "y"), time.Hour)
	if result.RequeueAfter != time.Second {
		t.Errorf("requeue after %s, want the phases' sooner 1s", result.RequeueAfter)
	}
}

func TestFinishReconcileReturnsOtherErrorsForBackoff(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		reason string
	}{
		{"a bug or an API error", errors.New("getting namespace acme: timeout"), tenancyv1.ProgressingReason},
		{"the database cannot be reached", fmt.Errorf("upsert: %w", db.ErrNotMigrated), tenancyv1.DatabaseUnavailableReason},
		{"the database refuses", fmt.Errorf("upsert: %w", &pgconn.PgError{Code: "42P01", Message: "no such table"}), tenancyv1.DatabaseErrorReason},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := projectAt(2, 1, tenancyv1.StalledCondition)
			result, err := finishReconcile(p, ctrl.Result{RequeueAfter: time.Second}, tc.err, time.Hour)
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v, want %v returned for controller-runtime's backoff", err, tc.err)
			}
			if result.RequeueAfter != time.Second {
				t.Errorf("requeue after %s, want the phases' result unchanged", result.RequeueAfter)
			}
			wantCondition(t, p, tenancyv1.ReadyCondition, metav1.ConditionFalse, tc.reason)
			wantCondition(t, p, tenancyv1.ReconcilingCondition, metav1.ConditionTrue, tc.reason)
			wantNoCondition(t, p, tenancyv1.StalledCondition)
			if msg := meta.FindStatusCondition(p.Status.Conditions, tenancyv1.ReadyCondition).Message; msg != tc.err.Error() {
				t.Errorf("Ready message %q, want the error's", msg)
			}
			if p.Status.ObservedGeneration != 1 {
				t.Errorf("observedGeneration %d, want 1 kept", p.Status.ObservedGeneration)
			}
		})
	}
}

func TestEveryKindHandsOutItsWholeStatus(t *testing.T) {
	kinds := []tenancyv1.Object{
		&tenancyv1.Organization{}, &tenancyv1.Project{}, &tenancyv1.Membership{}, &tenancyv1.APIKey{}, &tenancyv1.TenantTable{},
		&tenancyv1.AccountSuspension{}, &tenancyv1.OAuthClient{},
	}
	for _, obj := range kinds {
		// A copy taken before the reconcile, as the status patcher takes it.
		before := obj.FullStatus()
		obj.CommonStatusRef().ObservedGeneration = 7
		if equality.Semantic.DeepEqual(before, obj.FullStatus()) {
			t.Errorf("%T: a changed status compares equal to the one before, so it would never be written", obj)
		}
	}
	org := &tenancyv1.Organization{}
	org.Status.ID = "1"
	if org.FullStatus().(tenancyv1.OrganizationStatus).ID != "1" {
		t.Error("FullStatus misses the kind's own fields")
	}
}

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tenancyv1.AddToScheme(scheme))
	return scheme
}

func TestStatusPatcherWritesOnlyAChangedStatus(t *testing.T) {
	ctx := context.Background()
	stored := projectAt(1, 1)
	patches := 0
	c := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(stored).WithStatusSubresource(stored).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				patches++
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		}).Build()
	p := &tenancyv1.Project{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(stored), p); err != nil {
		t.Fatal(err)
	}

	patcher := newStatusPatcher(p)
	if err := patcher.patch(ctx, c, p); err != nil || patches != 0 {
		t.Fatalf("unchanged status: %d patches, error %v; want none", patches, err)
	}
	p.Status.ID = "row-1"
	if err := patcher.patch(ctx, c, p); err != nil || patches != 1 {
		t.Fatalf("changed status: %d patches, error %v; want one", patches, err)
	}
	got := &tenancyv1.Project{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(stored), got); err != nil || got.Status.ID != "row-1" {
		t.Errorf("stored status.id %q (error %v), want row-1", got.Status.ID, err)
	}

	if err := c.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	p.Status.ID = "row-2"
	if err := newStatusPatcher(got).patch(ctx, c, p); err != nil {
		t.Errorf("patching an object that is gone: %v, want nothing to do", err)
	}
}

// reconcileLog collects the V(1) lines of the lifecycle.
type reconcileLog struct{ lines []string }

func (l *reconcileLog) context() context.Context {
	logger := funcr.New(func(prefix, args string) { l.lines = append(l.lines, args) }, funcr.Options{Verbosity: 1})
	return ctrl.LoggerInto(context.Background(), logger)
}

func (l *reconcileLog) wantOne(t *testing.T, outcome, reason string) {
	t.Helper()
	if len(l.lines) != 1 {
		t.Fatalf("%d log lines, want one per reconcile: %q", len(l.lines), l.lines)
	}
	line := l.lines[0]
	for _, want := range []string{`"msg"="Reconciled"`, `"outcome"="` + outcome + `"`, `"reason"="` + reason + `"`, `"requeueAfter"=`, `"duration"=`} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %s lacks %s", line, want)
		}
	}
}

func TestLifecycleWritesTheOutcomeAndLogsIt(t *testing.T) {
	stored := projectAt(1, -1)
	stored.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
	c := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(stored).WithStatusSubresource(stored).Build()
	var log reconcileLog
	l := projectLifecycle(c, func(context.Context, *tenancyv1.Project) (ctrl.Result, error) {
		return ctrl.Result{}, stalled(tenancyv1.NamespaceNotBoundReason, "Namespace acme is bound to no organization")
	}, func(context.Context, *tenancyv1.Project) error { return nil })

	result, err := l.reconcile(log.context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(stored)})

	if err != nil {
		t.Fatal(err)
	}
	wantJittered(t, result.RequeueAfter, time.Hour)
	got := &tenancyv1.Project{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(stored), got); err != nil {
		t.Fatal(err)
	}
	if !controllerutil.ContainsFinalizer(got, tenancyv1.Finalizer) {
		t.Error("no finalizer: the rows could outlive the object")
	}
	wantCondition(t, got, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.NamespaceNotBoundReason)
	log.wantOne(t, tenancyv1.StalledCondition, tenancyv1.NamespaceNotBoundReason)
}

func TestLifecycleWaitsQuietlyForANewObjectsOrganization(t *testing.T) {
	stored := projectAt(1, -1)
	stored.CreationTimestamp = metav1.NewTime(time.Now())
	c := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(stored).WithStatusSubresource(stored).Build()
	var log reconcileLog
	l := projectLifecycle(c, func(context.Context, *tenancyv1.Project) (ctrl.Result, error) {
		return ctrl.Result{}, waitingOn(&tenancyv1.Organization{}, tenancyv1.OrganizationNotReadyReason, "queued")
	}, func(context.Context, *tenancyv1.Project) error { return nil })

	result, err := l.reconcile(log.context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(stored)})

	if err != nil {
		t.Fatal(err)
	}
	wantJittered(t, result.RequeueAfter, newObjectGrace)
	got := &tenancyv1.Project{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(stored), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Conditions) != 0 {
		t.Errorf("conditions %+v written; a new object waits for its Organization without a status write", got.Status.Conditions)
	}
	log.wantOne(t, waitingQuietly, tenancyv1.OrganizationNotReadyReason)
}

func TestLifecycleCleansUpThenLetsTheObjectGo(t *testing.T) {
	stored := projectAt(1, 1)
	stored.Finalizers = []string{tenancyv1.Finalizer}
	c := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(stored).WithStatusSubresource(stored).Build()
	if err := c.Delete(context.Background(), stored); err != nil {
		t.Fatal(err)
	}
	failing := errors.New("database down")
	cleanUpErr := failing
	cleanUps := 0
	var log reconcileLog
	l := projectLifecycle(c, func(context.Context, *tenancyv1.Project) (ctrl.Result, error) {
		t.Error("the phases ran for an object being deleted")
		return ctrl.Result{}, nil
	}, func(context.Context, *tenancyv1.Project) error { cleanUps++; return cleanUpErr })
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(stored)}

	if _, err := l.reconcile(log.context(), req); !errors.Is(err, failing) {
		t.Fatalf("error %v, want the clean-up's, for backoff", err)
	}
	got := &tenancyv1.Project{}
	if err := c.Get(context.Background(), req.NamespacedName, got); err != nil {
		t.Fatalf("the object went although its clean-up failed: %v", err)
	}
	wantCondition(t, got, tenancyv1.ReconcilingCondition, metav1.ConditionTrue, tenancyv1.ProgressingReason)
	log.wantOne(t, tenancyv1.ReconcilingCondition, tenancyv1.ProgressingReason)

	cleanUpErr, log.lines = nil, nil
	if _, err := l.reconcile(log.context(), req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), req.NamespacedName, got); err == nil || cleanUps != 2 {
		t.Errorf("after %d clean-ups the object is still there (error %v): the finalizer must go once the clean-up succeeds", cleanUps, err)
	}
	log.wantOne(t, deletedOutcome, "")
}

// projectLifecycle is the lifecycle a reconciler gives a Project, with the phases and the clean-up
// a test chooses.
func projectLifecycle(c client.Client, reconcileNormal func(context.Context, *tenancyv1.Project) (ctrl.Result, error),
	cleanUp func(context.Context, *tenancyv1.Project) error) lifecycle[*tenancyv1.Project] {
	return lifecycle[*tenancyv1.Project]{
		client:          c,
		resync:          time.Hour,
		ownWrites:       &ownStatusWrites{},
		newObject:       func() *tenancyv1.Project { return &tenancyv1.Project{} },
		reconcileNormal: reconcileNormal,
		cleanUp:         cleanUp,
	}
}
