package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// AccountSuspensionStore is the database side of the AccountSuspension controller.
type AccountSuspensionStore interface {
	SuspendAccount(ctx context.Context, s db.AccountSuspension, actor db.Actor) (db.SuspensionResult, error)
	LiftSuspension(ctx context.Context, uid, name string, actor db.Actor) error
}

// AccountSuspensionReconciler keeps each AccountSuspension's account disabled, and enables it
// again when the suspension is deleted.
type AccountSuspensionReconciler struct {
	client.Client
	Store    AccountSuspensionStore
	Recorder events.EventRecorder
	// ResyncPeriod is how often a suspension is applied again: an account whose flag someone
	// cleared by hand is disabled again.
	ResyncPeriod time.Duration
	Options      controller.Options
	ownStatus    ownStatusWrites
}

// +kubebuilder:rbac:groups=tenancy.dev,resources=accountsuspensions,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=accountsuspensions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=accountsuspensions/finalizers,verbs=update

// Reconcile applies one AccountSuspension.
func (r *AccountSuspensionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return lifecycle[*tenancyv1.AccountSuspension]{
		ownWrites:       &r.ownStatus,
		client:          r.Client,
		resync:          r.ResyncPeriod,
		newObject:       func() *tenancyv1.AccountSuspension { return &tenancyv1.AccountSuspension{} },
		reconcileNormal: r.suspend,
		cleanUp: func(ctx context.Context, s *tenancyv1.AccountSuspension) error {
			return r.Store.LiftSuspension(ctx, string(s.UID), s.Name, actorOf(s, "accountsuspension"))
		},
	}.reconcile(ctx, req)
}

// suspend disables the account and ends its sessions.
func (r *AccountSuspensionReconciler) suspend(ctx context.Context, s *tenancyv1.AccountSuspension) (ctrl.Result, error) {
	result, err := r.Store.SuspendAccount(ctx, db.AccountSuspension{
		UID: string(s.UID), Name: s.Name, Email: s.Spec.Email, Reason: s.Spec.Reason,
	}, actorOf(s, "accountsuspension"))
	if err != nil {
		return ctrl.Result{}, err
	}
	s.Status.UserID = result.UserID
	if result.SessionsEnded > 0 {
		s.Status.SessionsEnded += result.SessionsEnded
		r.Recorder.Eventf(s, nil, corev1.EventTypeNormal, "SessionsEnded", "SuspendAccount", "Ended %d sessions of %s", result.SessionsEnded, s.Spec.Email)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller.
func (r *AccountSuspensionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&tenancyv1.AccountSuspension{}, builder.WithPredicates(specChanged)).
		WithOptions(r.Options).
		Complete(r)
}
