package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// addFinalizer makes sure the object cannot go before its rows are removed.
func addFinalizer(ctx context.Context, c client.Client, obj client.Object) error {
	before := obj.DeepCopyObject().(client.Object)
	if !controllerutil.AddFinalizer(obj, tenancyv1.Finalizer) {
		return nil
	}
	// The optimistic lock keeps a stale copy from dropping a finalizer someone else just added.
	if err := c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding finalizer: %w", err)
	}
	return nil
}

// removeFinalizer lets the object go once its rows are removed.
func removeFinalizer(ctx context.Context, c client.Client, obj client.Object) error {
	before := obj.DeepCopyObject().(client.Object)
	if !controllerutil.RemoveFinalizer(obj, tenancyv1.Finalizer) {
		return nil
	}
	if err := c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	return nil
}

// processStart and migrationGrace bound the silent wait for the schema check at start: a
// database that stays unreachable longer is reported on the objects as usual.
var processStart = time.Now()

const migrationGrace = 30 * time.Second

// newObjectGrace is how long a new object may wait for its Organization or Project without
// saying so in its status: applied in one pass with them (GitOps), it usually waits less than a
// second, and reporting that wait would cost a status write per object. Until its first status
// it reads as InProgress all the same.
const newObjectGrace = 10 * time.Second

// queuedBlockerGrace is the longer silence while that Organization or Project has not been
// reconciled even once: thousands of tenants applied at once queue their Organizations, and a
// waiting status on each of their objects (then the Ready one) would add writes just while the
// API server is busiest, slowing the Organizations further (docs/benchmarks.md, "Why the code
// is shaped this way").
const queuedBlockerGrace = 5 * time.Minute

// briefWait reports whether err is such a wait of an object that has no status yet.
func briefWait(obj tenancyv1.Object, err error) bool {
	var wait *waitingError
	if !errors.As(err, &wait) ||
		(wait.reason != tenancyv1.OrganizationNotReadyReason && wait.reason != tenancyv1.ProjectNotReadyReason) ||
		len(obj.CommonStatusRef().Conditions) != 0 {
		return false
	}
	age := time.Since(obj.GetCreationTimestamp().Time)
	return age < newObjectGrace || (wait.blockerQueued && age < queuedBlockerGrace)
}

// lifecycle is the frame every tenancy reconciler shares: fetch, then either clean up and drop
// the finalizer, or add the finalizer and run the kind's phases; the status is patched once at
// the end, and only when it changed.
type lifecycle[T tenancyv1.Object] struct {
	client client.Client
	resync time.Duration
	// newObject returns an empty object of the kind.
	newObject func() T
	// reconcileNormal runs the kind's phases.
	reconcileNormal func(ctx context.Context, obj T) (ctrl.Result, error)
	// cleanUp removes what the object owns outside Kubernetes' garbage collection; the finalizer
	// goes once it succeeds.
	cleanUp func(ctx context.Context, obj T) error
	// ownWrites holds the controller's status patches that its cache may not show yet.
	ownWrites *ownStatusWrites
}

// ownStatusWrites remembers, per object, the resourceVersion that the controller's last status
// patch replaced. While the cache still shows that version, a reconcile (woken by a Secret or
// Namespace the previous one wrote) would start from the old status and write the same status
// again, an API write for nothing.
type ownStatusWrites struct{ replaced sync.Map }

// cacheBehind reports whether obj, read from the cache, predates the controller's own last
// status patch; once the cache has caught up the entry goes.
func (w *ownStatusWrites) cacheBehind(key types.NamespacedName, obj client.Object) bool {
	replaced, ok := w.replaced.Load(key)
	if !ok {
		return false
	}
	if replaced == obj.GetResourceVersion() {
		return true
	}
	w.replaced.CompareAndDelete(key, replaced)
	return false
}

// patched records a status patch of key that replaced resourceVersion before with after; a patch
// that changed nothing keeps the version and is not waited for.
func (w *ownStatusWrites) patched(key types.NamespacedName, before, after string) {
	if after != before {
		w.replaced.Store(key, before)
	}
}

// forget drops key, whose object is gone.
func (w *ownStatusWrites) forget(key types.NamespacedName) { w.replaced.Delete(key) }

// cacheLagRetry is how soon a reconcile that found the cache behind runs again: the status
// update that it waits for wakes no reconcile by itself (specChanged filters it).
const cacheLagRetry = 100 * time.Millisecond

// schemaWaitReason is the logged reason of a reconcile that waits quietly for the schema check.
const schemaWaitReason = "DatabaseNotMigrated"

// reconcile runs one reconcile of req and logs its outcome. Finding the object gone, or the cache
// behind the controller's own last status write, it does nothing and logs nothing.
func (l lifecycle[T]) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	started := time.Now()
	obj := l.newObject()
	if err := l.client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			l.ownWrites.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if l.ownWrites.cacheBehind(req.NamespacedName, obj) {
		return ctrl.Result{RequeueAfter: cacheLagRetry}, nil
	}
	var (
		result  ctrl.Result
		outcome reconcileOutcome
		err     error
	)
	if obj.GetDeletionTimestamp().IsZero() {
		result, outcome, err = l.reconcileLive(ctx, req, obj)
	} else {
		result, outcome, err = l.reconcileDelete(ctx, obj)
	}
	outcome.log(ctx, result, time.Since(started))
	return result, err
}

// reconcileLive adds the finalizer, runs the kind's phases and writes their outcome into the
// status.
func (l lifecycle[T]) reconcileLive(ctx context.Context, req ctrl.Request, obj T) (result ctrl.Result, outcome reconcileOutcome, retErr error) {
	if err := addFinalizer(ctx, l.client, obj); err != nil {
		return ctrl.Result{}, reconcileOutcome{state: tenancyv1.ReconcilingCondition, reason: tenancyv1.ProgressingReason}, err
	}

	patcher := newStatusPatcher(obj)
	defer func() {
		// A bug must not read as success: report a panic as the reconcile's error.
		if p := recover(); p != nil {
			retErr = fmt.Errorf("reconciler panic: %v", p)
		}
		if errors.Is(retErr, db.ErrNotMigrated) && time.Since(processStart) < migrationGrace {
			// The manager checks the schema as it starts: until then, wait without a word, or
			// every restart would turn Ready objects not Ready for a moment (and write them).
			result, retErr = ctrl.Result{RequeueAfter: time.Second}, nil
			outcome = reconcileOutcome{state: waitingQuietly, reason: schemaWaitReason}
			return
		}
		if briefWait(obj, retErr) {
			// The watch on the Organization or Project wakes the object when that gets its row;
			// the requeue is a safety net, after which a wait that lasts is reported.
			outcome = reconcileOutcome{state: waitingQuietly, reason: waitReason(retErr)}
			result, retErr = ctrl.Result{RequeueAfter: jitter(newObjectGrace)}, nil
			return
		}
		result, retErr = finishReconcile(obj, result, retErr, l.resync)
		outcome = outcomeOf(obj)
		before := obj.GetResourceVersion()
		err := patcher.patch(ctx, l.client, obj)
		if err == nil {
			l.ownWrites.patched(req.NamespacedName, before, obj.GetResourceVersion())
		}
		retErr = errors.Join(retErr, err)
	}()
	result, retErr = l.reconcileNormal(ctx, obj)
	return result, outcome, retErr
}

// reconcileDelete runs the kind's clean-up and then lets the object go.
func (l lifecycle[T]) reconcileDelete(ctx context.Context, obj T) (ctrl.Result, reconcileOutcome, error) {
	deleted := reconcileOutcome{state: deletedOutcome}
	if !controllerutil.ContainsFinalizer(obj, tenancyv1.Finalizer) {
		return ctrl.Result{}, deleted, nil
	}
	patcher := newStatusPatcher(obj)
	if err := l.cleanUp(ctx, obj); err != nil {
		result, err := finishReconcile(obj, ctrl.Result{}, err, l.resync)
		return result, outcomeOf(obj), errors.Join(err, patcher.patch(ctx, l.client, obj))
	}
	return ctrl.Result{}, deleted, removeFinalizer(ctx, l.client, obj)
}
