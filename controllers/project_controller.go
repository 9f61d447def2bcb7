package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// ProjectStore is the database side of the Project controller.
type ProjectStore interface {
	UpsertProject(ctx context.Context, proj db.Project, actor db.Actor) (db.UpsertResult, error)
	DeleteProject(ctx context.Context, uid, name string, actor db.Actor) error
}

// ProjectReconciler keeps each Project's row under its organization.
type ProjectReconciler struct {
	client.Client
	Store    ProjectStore
	Recorder events.EventRecorder
	// ResyncPeriod is how often a Ready project is reconciled again, restoring rows changed by hand.
	ResyncPeriod time.Duration
	// Options tune concurrency and retry backoff.
	Options controller.Options
	// ownStatus holds its last status writes until the cache shows them.
	ownStatus ownStatusWrites
}

type projectScope struct {
	project *tenancyv1.Project
	org     *tenancyv1.Organization
}

// +kubebuilder:rbac:groups=tenancy.dev,resources=projects,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=projects/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=projects/finalizers,verbs=update

// Reconcile brings one Project's row in line with its spec.
func (r *ProjectReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return lifecycle[*tenancyv1.Project]{
		client:    r.Client,
		ownWrites: &r.ownStatus,
		resync:    r.ResyncPeriod,
		newObject: func() *tenancyv1.Project { return &tenancyv1.Project{} },
		reconcileNormal: func(ctx context.Context, p *tenancyv1.Project) (ctrl.Result, error) {
			return runPhases(ctx, &projectScope{project: p}, r.resolveOrganization, r.reconcileRow)
		},
		cleanUp: func(ctx context.Context, p *tenancyv1.Project) error {
			return r.Store.DeleteProject(ctx, string(p.UID), p.Name, actorOf(p, "project"))
		},
	}.reconcile(ctx, req)
}

// resolveOrganization finds the Organization that owns the project's namespace.
func (r *ProjectReconciler) resolveOrganization(ctx context.Context, s *projectScope) (ctrl.Result, error) {
	org, err := organizationOfNamespace(ctx, r.Client, s.project.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	s.org = org
	s.project.Status.OrganizationID = org.Status.ID
	return ctrl.Result{}, nil
}

// reconcileRow upserts the project's row; a row deleted or changed by hand comes back.
func (r *ProjectReconciler) reconcileRow(ctx context.Context, s *projectScope) (ctrl.Result, error) {
	p := s.project
	res, err := r.Store.UpsertProject(ctx, db.Project{
		ID:             p.Status.ID,
		UID:            string(p.UID),
		OrganizationID: s.org.Status.ID,
		Name:           p.Name,
		DisplayName:    p.Spec.DisplayName,
	}, actorOf(p, "project"))
	if db.IsForeignKeyViolation(err) {
		return ctrl.Result{}, waiting(tenancyv1.OrganizationNotReadyReason,
			"Organization %s has no database row yet", s.org.Name)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	reportRowChange(r.Recorder, p, p.Status.ID, res)
	p.Status.ID = res.ID
	return ctrl.Result{}, nil
}

// organizationOfNamespace returns the Organization bound to namespace ns once it has a row. It
// waits while an Organization names the namespace but has not bound it yet (GitOps applies a
// tenant's objects in one pass) and while the Organization is being deleted, and stalls when no
// Organization claims the namespace.
func organizationOfNamespace(ctx context.Context, c client.Client, ns string) (*tenancyv1.Organization, error) {
	namespace := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil {
		return nil, fmt.Errorf("getting namespace %s: %w", ns, err)
	}
	if owner := namespace.Labels[tenancyv1.OrganizationLabel]; owner != "" {
		org := &tenancyv1.Organization{}
		err := c.Get(ctx, client.ObjectKey{Name: owner}, org)
		// Only a label that matches the Organization's own spec binds: a label put on some other
		// namespace by hand must not let its objects into that organization.
		if err == nil && org.NamespaceName() == ns {
			// Its rows go first when it is deleted: nothing may be written for it any more.
			if !org.DeletionTimestamp.IsZero() {
				return nil, waiting(tenancyv1.OrganizationNotReadyReason, "Organization %s is being deleted", owner)
			}
			if org.Status.ID == "" {
				return nil, waitingOn(org, tenancyv1.OrganizationNotReadyReason, "Organization %s has no database row yet", owner)
			}
			return org, nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("getting organization %s: %w", owner, err)
		}
	}
	claimants, err := tenant.OrganizationsNaming(ctx, c, ns)
	if err != nil {
		return nil, err
	}
	if len(claimants) > 0 {
		return nil, waitingOn(&claimants[0], tenancyv1.OrganizationNotReadyReason,
			"Organization %s has not bound namespace %s yet", claimants[0].Name, ns)
	}
	return nil, stalled(tenancyv1.NamespaceNotBoundReason,
		"Namespace %s is bound to no organization: create an Organization whose spec.namespace is %s, or move this object to an organization's namespace", ns, ns)
}

// SetupWithManager registers the controller; tenant.Setup must have run.
func (r *ProjectReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&tenancyv1.Project{}, builder.WithPredicates(specChanged)).
		Watches(&tenancyv1.Organization{}, handler.EnqueueRequestsFromMapFunc(r.projectsOfOrganization),
			builder.WithPredicates(organizationBindingChanged)).
		WithOptions(r.Options).
		Named("project").
		Complete(r)
}

// projectsOfOrganization wakes the projects in an organization's namespace.
func (r *ProjectReconciler) projectsOfOrganization(ctx context.Context, obj client.Object) []reconcile.Request {
	org := obj.(*tenancyv1.Organization)
	var projects tenancyv1.ProjectList
	if err := r.List(ctx, &projects, client.InNamespace(org.NamespaceName())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing projects of organization", "organization", org.Name)
		return nil
	}
	requests := make([]reconcile.Request, 0, len(projects.Items))
	for _, p := range projects.Items {
		requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
	}
	return requests
}

// organizationBindingChanged passes organization events that can unblock its namespaced objects:
// creation, deletion, and a new row id or namespace in its status.
var organizationBindingChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		oldOrg, newOrg := e.ObjectOld.(*tenancyv1.Organization), e.ObjectNew.(*tenancyv1.Organization)
		return oldOrg.Status.ID != newOrg.Status.ID || oldOrg.Status.Namespace != newOrg.Status.Namespace
	},
	GenericFunc: func(event.GenericEvent) bool { return false },
}
