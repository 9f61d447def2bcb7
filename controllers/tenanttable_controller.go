package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// TenantTableStore is the database side of the TenantTable controller.
type TenantTableStore interface {
	EnsurePolicies(ctx context.Context, t db.TenantTable) (db.TableReport, error)
	DropPolicies(ctx context.Context, t db.TenantTable, disableRLS bool) error
}

// TenantTableReconciler keeps row-level security and the four tenancy policies on each
// TenantTable's application table.
type TenantTableReconciler struct {
	client.Client
	Store    TenantTableStore
	Recorder events.EventRecorder
	// ResyncPeriod is how often a table is checked again: drift is put back, and a table that
	// did not exist yet is found.
	ResyncPeriod time.Duration
	Options      controller.Options
	// ownStatus holds its last status writes until the cache shows them.
	ownStatus ownStatusWrites
}

// +kubebuilder:rbac:groups=tenancy.dev,resources=tenanttables,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=tenanttables/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=tenanttables/finalizers,verbs=update

// Reconcile brings one TenantTable's policies in line with its spec.
func (r *TenantTableReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return lifecycle[*tenancyv1.TenantTable]{
		ownWrites:       &r.ownStatus,
		client:          r.Client,
		resync:          r.ResyncPeriod,
		newObject:       func() *tenancyv1.TenantTable { return &tenancyv1.TenantTable{} },
		reconcileNormal: r.reconcilePolicies,
		cleanUp: func(ctx context.Context, t *tenancyv1.TenantTable) error {
			return r.Store.DropPolicies(ctx, tableOf(t), t.Annotations[tenancyv1.DisableRLSOnDeleteAnnotation] == "true")
		},
	}.reconcile(ctx, req)
}

// reconcilePolicies puts the policies in place and reports what it restored and what it warns of.
func (r *TenantTableReconciler) reconcilePolicies(ctx context.Context, t *tenancyv1.TenantTable) (ctrl.Result, error) {
	report, err := r.Store.EnsurePolicies(ctx, tableOf(t))
	var missing *db.TableMissingError
	if errors.As(err, &missing) {
		t.Status.Policies = nil
		return ctrl.Result{}, stalled(missing.Reason, "%s; the operator checks again every resync", missing.Message)
	}
	var reserved *db.ReservedSchemaError
	if errors.As(err, &reserved) {
		t.Status.Policies = nil
		return ctrl.Result{}, stalled(tenancyv1.SchemaReservedReason, "%s", reserved)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	observed := t.Status.ObservedGeneration == t.Generation && len(t.Status.Policies) > 0
	if !observed {
		meta.RemoveStatusCondition(&t.Status.Conditions, tenancyv1.DriftRestoredCondition)
	}
	if len(report.Restored) > 0 && observed {
		what := strings.Join(report.Restored, ", ")
		r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, "DriftRestored", "EnsurePolicies", "Changed outside the operator and put back: %s", what)
		setCondition(t, tenancyv1.DriftRestoredCondition, metav1.ConditionTrue, "Restored",
			fmt.Sprintf("%s changed outside the operator and put back at %s", what, time.Now().UTC().Format(time.RFC3339)))
	}
	if !slices.Equal(report.Warnings, t.Status.Warnings) && len(report.Warnings) > 0 {
		r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, "IsolationWarning", "EnsurePolicies", "%s", strings.Join(report.Warnings, "; "))
	}
	t.Status.Warnings = report.Warnings
	t.Status.Policies = t.Status.Policies[:0]
	for _, command := range db.Commands {
		t.Status.Policies = append(t.Status.Policies, db.PolicyName(command))
	}
	return ctrl.Result{}, nil
}

// tableOf is the database's view of a TenantTable, with the CRD's defaults applied.
func tableOf(t *tenancyv1.TenantTable) db.TenantTable {
	s := t.Spec.WithDefaults()
	return db.TenantTable{
		Name: t.Name, Schema: s.Schema, Table: s.Table, OrganizationColumn: s.OrganizationColumn, ProjectColumn: s.ProjectColumn,
		Access: map[string]string{
			"SELECT": string(s.Access.Select), "INSERT": string(s.Access.Insert),
			"UPDATE": string(s.Access.Update), "DELETE": string(s.Access.Delete),
		},
	}
}

// SetupWithManager registers the controller.
func (r *TenantTableReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&tenancyv1.TenantTable{}, builder.WithPredicates(specChanged)).
		WithOptions(r.Options).
		Complete(r)
}
