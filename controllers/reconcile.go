package controllers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// phase is one step of reconcileNormal; the scope carries what earlier phases found.
type phase[S any] func(ctx context.Context, scope S) (ctrl.Result, error)

// runPhases runs the phases in order and stops at the first error, because each phase builds on
// what the previous ones put in the scope. Results combine to the lowest non-zero requeue.
func runPhases[S any](ctx context.Context, scope S, phases ...phase[S]) (ctrl.Result, error) {
	var result ctrl.Result
	for _, p := range phases {
		r, err := p(ctx, scope)
		result = lowestRequeue(result, r)
		if err != nil {
			return result, err
		}
	}
	return result, nil
}

func lowestRequeue(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0:
		return a
	case b.RequeueAfter < a.RequeueAfter:
		return b
	}
	return a
}

// stalledError is a condition that retrying cannot fix until something else changes (another
// object, which the controller watches). It makes the object Stalled with its reason.
type stalledError struct {
	reason  string
	message string
}

func (e *stalledError) Error() string { return e.message }

func stalled(reason, format string, args ...any) error {
	return &stalledError{reason: reason, message: fmt.Sprintf(format, args...)}
}

// waitingError means the object depends on something not ready yet; it is retried after a short
// delay, and reported as Reconciling rather than as a failure.
type waitingError struct {
	reason  string
	message string
	// blockerQueued says that what the object waits for has not been reconciled even once yet:
	// it waits in its controller's queue, not on a problem.
	blockerQueued bool
}

func (e *waitingError) Error() string { return e.message }

func waiting(reason, format string, args ...any) error {
	return &waitingError{reason: reason, message: fmt.Sprintf(format, args...)}
}

// waitingOn is waiting for an Organization or Project that the object needs.
func waitingOn(blocker tenancyv1.Object, reason, format string, args ...any) error {
	return &waitingError{reason: reason, message: fmt.Sprintf(format, args...),
		blockerQueued: len(blocker.CommonStatusRef().Conditions) == 0}
}

// waitDelay is how soon an object that waits on another is looked at again; watches usually
// wake it sooner.
const waitDelay = 5 * time.Second

// jitter spreads periodic resyncs so that thousands of objects do not come due together.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// finishReconcile turns the outcome of a reconcile into kstatus conditions and into what
// controller-runtime should do next: stalled and waiting outcomes are not errors to retry with
// backoff, database outages are.
func finishReconcile(obj tenancyv1.Object, result ctrl.Result, err error, resync time.Duration) (ctrl.Result, error) {
	status := obj.CommonStatusRef()
	gen := obj.GetGeneration()
	var stall *stalledError
	var wait *waitingError
	switch {
	case err == nil:
		status.ObservedGeneration = gen
		setCondition(obj, tenancyv1.ReadyCondition, metav1.ConditionTrue, tenancyv1.ReconciledReason, "Reconciled")
		meta.RemoveStatusCondition(&status.Conditions, tenancyv1.ReconcilingCondition)
		meta.RemoveStatusCondition(&status.Conditions, tenancyv1.StalledCondition)
		return lowestRequeue(result, ctrl.Result{RequeueAfter: jitter(resync)}), nil
	case errors.As(err, &stall):
		// The decision about this generation is made: observing it lets kstatus say Failed.
		status.ObservedGeneration = gen
		setCondition(obj, tenancyv1.ReadyCondition, metav1.ConditionFalse, stall.reason, stall.message)
		setCondition(obj, tenancyv1.StalledCondition, metav1.ConditionTrue, stall.reason, stall.message)
		meta.RemoveStatusCondition(&status.Conditions, tenancyv1.ReconcilingCondition)
		return ctrl.Result{RequeueAfter: jitter(resync)}, nil
	case errors.As(err, &wait):
		setCondition(obj, tenancyv1.ReadyCondition, metav1.ConditionFalse, wait.reason, wait.message)
		setCondition(obj, tenancyv1.ReconcilingCondition, metav1.ConditionTrue, wait.reason, wait.message)
		meta.RemoveStatusCondition(&status.Conditions, tenancyv1.StalledCondition)
		return lowestRequeue(result, ctrl.Result{RequeueAfter: jitter(waitDelay)}), nil
	default:
		reason := tenancyv1.ProgressingReason
		if db.IsUnavailable(err) {
			reason = tenancyv1.DatabaseUnavailableReason
		} else if db.IsQueryError(err) {
			reason = tenancyv1.DatabaseErrorReason
		}
		setCondition(obj, tenancyv1.ReadyCondition, metav1.ConditionFalse, reason, err.Error())
		setCondition(obj, tenancyv1.ReconcilingCondition, metav1.ConditionTrue, reason, err.Error())
		meta.RemoveStatusCondition(&status.Conditions, tenancyv1.StalledCondition)
		return result, err
	}
}

// reconcileOutcome is what one reconcile left an object with, for its log line.
type reconcileOutcome struct {
	// state is the condition that is now True (Ready, Reconciling or Stalled), waitingQuietly
	// for a wait that leaves the status as it was, or deletedOutcome once the clean-up is done.
	state string
	// reason is that condition's reason, or why the object waits.
	reason string
}

// The outcomes that no condition tells.
const (
	waitingQuietly = "Waiting"
	deletedOutcome = "Deleted"
)

// outcomeOf reads the outcome from the conditions that finishReconcile set; Stalled and
// Reconciling come first, as kstatus reads them.
func outcomeOf(obj tenancyv1.Object) reconcileOutcome {
	conditions := obj.CommonStatusRef().Conditions
	for _, condType := range []string{tenancyv1.StalledCondition, tenancyv1.ReconcilingCondition, tenancyv1.ReadyCondition} {
		if c := meta.FindStatusCondition(conditions, condType); c != nil && c.Status == metav1.ConditionTrue {
			return reconcileOutcome{state: condType, reason: c.Reason}
		}
	}
	return reconcileOutcome{}
}

// waitReason is the reason of a waitingError in err, or "" when there is none.
func waitReason(err error) string {
	var wait *waitingError
	if errors.As(err, &wait) {
		return wait.reason
	}
	return ""
}

// log writes one line per reconcile at V(1), which the manager's --zap-log-level=debug shows
// (docs/operations.md): enough to follow one object's reconciles without the cost of logging
// them all by default. Errors are logged by controller-runtime already.
func (o reconcileOutcome) log(ctx context.Context, result ctrl.Result, took time.Duration) {
	ctrl.LoggerFrom(ctx).V(1).Info("Reconciled", "outcome", o.state, "reason", o.reason,
		"requeueAfter", result.RequeueAfter.String(), "duration", took.String())
}

func setCondition(obj tenancyv1.Object, condType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&obj.CommonStatusRef().Conditions, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: obj.GetGeneration(),
	})
}

// statusPatcher writes an object's status once at the end of a reconcile, and only if it changed.
type statusPatcher[T tenancyv1.Object] struct {
	before T
}

func newStatusPatcher[T tenancyv1.Object](obj T) statusPatcher[T] {
	return statusPatcher[T]{before: obj.DeepCopyObject().(T)}
}

func (p statusPatcher[T]) patch(ctx context.Context, c client.Client, obj T) error {
	if equality.Semantic.DeepEqual(p.before.FullStatus(), obj.FullStatus()) {
		return nil
	}
	if err := c.Status().Patch(ctx, obj, client.MergeFrom(p.before)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("patching status: %w", err))
	}
	return nil
}

// actorOf attributes a change to the user the admission webhook recorded, or to the controller.
func actorOf(obj client.Object, controller string) db.Actor {
	if who := obj.GetAnnotations()[tenancyv1.LastChangedByAnnotation]; who != "" {
		return db.Actor{Name: who, RequestID: string(obj.GetUID())}
	}
	return db.Actor{Name: "system:tenancy:" + controller, RequestID: string(obj.GetUID())}
}

// reportRowChange tells, through an Event, that a row was updated for a new spec, or put back
// after someone changed or deleted it by hand (a write although the spec was already observed).
// previousID is the row id the status held before the upsert. The first row of a new object gets
// no Event: its Ready condition and status.id say as much, and an Event per object would be one
// more API write per object at scale.
func reportRowChange(recorder events.EventRecorder, obj tenancyv1.Object, previousID string, res db.UpsertResult) {
	switch {
	case !res.Changed, previousID == "":
	case obj.CommonStatusRef().ObservedGeneration == obj.GetGeneration():
		recorder.Eventf(obj, nil, corev1.EventTypeWarning, "DriftRestored", "UpsertRow",
			"Database row %s was changed or deleted outside the operator and has been restored", res.ID)
	default:
		recorder.Eventf(obj, nil, corev1.EventTypeNormal, "RowUpdated", "UpsertRow", "Updated database row %s", res.ID)
	}
}

// specChanged lets through what a reconciler must act on: creation, deletion, a new generation, or
// changed annotations (a resync request or a new last-changed-by); it ignores the reconciler's own
// status and finalizer writes.
var specChanged = predicate.Or(
	predicate.GenerationChangedPredicate{},
	predicate.AnnotationChangedPredicate{},
	predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectNew.GetDeletionTimestamp() != nil && e.ObjectOld.GetDeletionTimestamp() == nil
	}},
)
