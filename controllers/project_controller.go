package controllers

import (
	"context"
	"time"

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

// reconcileRow upserts the project's row; a row deleted or changed by hand comes back. A new row
// gets the id that tenancy.dev/row-id asks for, if any.
func (r *ProjectReconciler) reconcileRow(ctx context.Context, s *projectScope) (ctrl.Result, error) {
	p := s.project
	id, err := wantedRowID(p, p.Status.ID)
	if err != nil {
		return ctrl.Result{}, err
	}
	res, err := r.Store.UpsertProject(ctx, db.Project{
		ID:             id,
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
		return ctrl.Result{}, rowIDInUse(err)
	}
	reportRowChange(r.Recorder, p, p.Status.ID, res)
	p.Status.ID = res.ID
	return ctrl.Result{}, nil
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
