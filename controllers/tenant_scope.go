package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// tenantScope is where a project-scoped object lives: its organization and, when spec.project is
// set, the Project's row id.
type tenantScope struct {
	org       *tenancyv1.Organization
	projectID string
}

// resolveTenant fills in the organization that owns obj's namespace and the row id of the
// Project it names.
func resolveTenant(ctx context.Context, c client.Client, obj projectScoped, s *tenantScope) (ctrl.Result, error) {
	org, err := organizationOfNamespace(ctx, c, obj.GetNamespace())
	if err != nil {
		return ctrl.Result{}, err
	}
	s.org = org
	s.projectID, err = projectID(ctx, c, obj.GetNamespace(), obj.ProjectName())
	return ctrl.Result{}, err
}

// projectScoped is a namespaced kind with an optional spec.project.
type projectScoped interface {
	client.Object
	ProjectName() string
}

// organizationOfNamespace returns the Organization that owns namespace ns (tenant.OwnerOf, the
// rule the webhooks share) once it has bound the namespace and has a row. It waits while the
// Organization has not bound the namespace yet (GitOps applies a tenant's objects in one pass)
// and while it is being deleted, and stalls when no Organization claims the namespace.
func organizationOfNamespace(ctx context.Context, c client.Client, ns string) (*tenancyv1.Organization, error) {
	namespace := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil {
		return nil, fmt.Errorf("getting namespace %s: %w", ns, err)
	}
	owner, err := tenant.OwnerOf(ctx, c, ns, namespace, tenant.CachedClaimants(c))
	if err != nil {
		return nil, err
	}
	org := owner.Organization
	switch {
	case org == nil:
		return nil, stalled(tenancyv1.NamespaceNotBoundReason,
			"Namespace %s is bound to no organization: create an Organization whose spec.namespace is %s, or move this object to an organization's namespace", ns, ns)
	case !owner.Bound:
		return nil, waitingOn(org, tenancyv1.OrganizationNotReadyReason,
			"Organization %s has not bound namespace %s yet", org.Name, ns)
	case !org.DeletionTimestamp.IsZero():
		// Its rows go first when it is deleted: nothing may be written for it any more.
		return nil, waiting(tenancyv1.OrganizationNotReadyReason, "Organization %s is being deleted", org.Name)
	case org.Status.ID == "":
		return nil, waitingOn(org, tenancyv1.OrganizationNotReadyReason, "Organization %s has no database row yet", org.Name)
	}
	return org, nil
}

// projectID resolves spec.project (empty: organization-wide) to the Project's row id.
func projectID(ctx context.Context, c client.Client, namespace, project string) (string, error) {
	if project == "" {
		return "", nil
	}
	p := &tenancyv1.Project{}
	err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: project}, p)
	if apierrors.IsNotFound(err) {
		return "", stalled(tenancyv1.ProjectNotFoundReason, "spec.project: Project %s does not exist in namespace %s", project, namespace)
	}
	if err != nil {
		return "", fmt.Errorf("getting project %s: %w", project, err)
	}
	if p.Status.ID == "" || !p.DeletionTimestamp.IsZero() {
		return "", waitingOn(p, tenancyv1.ProjectNotReadyReason, "Project %s has no database row", project)
	}
	return p.Status.ID, nil
}
