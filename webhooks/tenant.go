package webhooks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// orgNamespace is what the cache shows of a namespace and the Organization that owns it.
type orgNamespace struct {
	// namespace is nil when it does not exist yet.
	namespace *corev1.Namespace
	// org is nil when no Organization owns the namespace.
	org *tenancyv1.Organization
}

// ending reports whether the organization or its namespace is being deleted: its Owners may go.
func (t orgNamespace) ending() bool {
	return t.org == nil || t.org.DeletionTimestamp != nil || (t.namespace != nil && t.namespace.DeletionTimestamp != nil)
}

// orgNamespaceOf finds the Organization that owns namespace ns, by the rule the controllers
// share (tenant.OwnerOf). An Organization created a moment ago may not be in the cache yet:
// before concluding that none names the namespace, it asks the API server.
func (a *admitter) orgNamespaceOf(ctx context.Context, ns string) (orgNamespace, error) {
	var t orgNamespace
	namespace := &corev1.Namespace{}
	switch err := a.cache.Get(ctx, client.ObjectKey{Name: ns}, namespace); {
	case err == nil:
		t.namespace = namespace
	case !apierrors.IsNotFound(err):
		return t, fmt.Errorf("getting namespace %s: %w", ns, err)
	}
	owner, err := tenant.OwnerOf(ctx, a.cache, ns, t.namespace, a.organizationsNaming)
	t.org = owner.Organization
	return t, err
}

// organizationsNaming lists the Organizations whose namespace is ns from the cache, or from the
// API server when the cache shows none.
func (a *admitter) organizationsNaming(ctx context.Context, ns string) ([]tenancyv1.Organization, error) {
	claimants, err := tenant.OrganizationsNaming(ctx, a.cache, ns)
	if err == nil && len(claimants) == 0 {
		return a.liveOrganizationsNaming(ctx, ns)
	}
	return claimants, err
}

// liveOrganizationsNaming asks the API server for the Organizations whose namespace is ns: those
// whose spec.namespace is ns (a selectable field, so that the API server filters rather than
// sending every Organization on each request) and the one named ns, whose namespace defaults to
// its name.
func (a *admitter) liveOrganizationsNaming(ctx context.Context, ns string) ([]tenancyv1.Organization, error) {
	var orgs tenancyv1.OrganizationList
	if err := a.live.List(ctx, &orgs, client.MatchingFields{"spec.namespace": ns}); err != nil {
		return nil, fmt.Errorf("listing organizations: %w", err)
	}
	named := &tenancyv1.Organization{}
	switch err := a.live.Get(ctx, client.ObjectKey{Name: ns}, named); {
	case err == nil:
		if !slices.ContainsFunc(orgs.Items, func(o tenancyv1.Organization) bool { return o.Name == named.Name }) {
			orgs.Items = append(orgs.Items, *named)
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("getting organization %s: %w", ns, err)
	}
	return slices.DeleteFunc(orgs.Items, func(o tenancyv1.Organization) bool { return o.NamespaceName() != ns }), nil
}

// standing is a user's roles in one organization, from its Memberships.
type standing struct {
	org      tenancyv1.Role
	projects map[string]tenancyv1.Role
}

// in is the user's role in a scope: a project role there or the organization role, the higher.
func (s standing) in(project string) tenancyv1.Role {
	r := s.org
	if p := s.projects[project]; project != "" && p.Rank() > r.Rank() {
		r = p
	}
	return r
}

// standingOf reads email's roles in namespace ns. Memberships being deleted grant nothing.
func (a *admitter) standingOf(ctx context.Context, ns, email string) (standing, error) {
	s := standing{projects: map[string]tenancyv1.Role{}}
	if email == "" {
		return s, nil
	}
	memberships, err := tenant.MembershipsOf(ctx, a.cache, ns, email)
	if err != nil {
		return s, err
	}
	for _, m := range memberships {
		if m.DeletionTimestamp != nil {
			continue
		}
		role := m.RoleOrDefault()
		if m.Spec.Project == "" {
			if role.Rank() > s.org.Rank() {
				s.org = role
			}
		} else if role.Rank() > s.projects[m.Spec.Project].Rank() {
			s.projects[m.Spec.Project] = role
		}
	}
	return s, nil
}

// authorize applies the authority rules to who's change c of an object in namespace ns, scoped
// to project (empty for the organization). Platform admins pass, and so do deletions while the
// organization or its namespace goes (the namespace controller deletes what the namespace holds).
func (a *admitter) authorize(ctx context.Context, who requester, ns, project string, c roleChange) (field.ErrorList, error) {
	if who.platformAdmin {
		return nil, nil
	}
	t, err := a.orgNamespaceOf(ctx, ns)
	if err != nil {
		return nil, err
	}
	return a.authorizeIn(ctx, who, t, ns, project, c)
}

// authorizeIn is authorize for a caller that has already resolved ns's organization as t.
func (a *admitter) authorizeIn(ctx context.Context, who requester, t orgNamespace, ns, project string, c roleChange) (field.ErrorList, error) {
	if who.platformAdmin || (c.verb == "delete" && t.ending()) {
		return nil, nil
	}
	s, err := a.standingOf(ctx, ns, who.email)
	if err != nil {
		return nil, err
	}
	return authorizeRoleChange(who.name(), s.in(project), roleScope{orgName(t, ns), project}, c), nil
}

// finalizerKept refuses anyone but platform admins removing tenancy.dev/finalizer: a deletion
// without it skips the clean-up, and a membership row or an unrevoked API key would outlive the
// object.
func finalizerKept(old, obj client.Object, who requester) field.ErrorList {
	if who.platformAdmin || !controllerutil.ContainsFinalizer(old, tenancyv1.Finalizer) || controllerutil.ContainsFinalizer(obj, tenancyv1.Finalizer) {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("metadata", "finalizers"),
		"only the operator removes "+tenancyv1.Finalizer+", once it has cleaned up: delete the object instead")}
}

// orgName names the organization of a namespace for refusals and records, or the namespace
// when no organization owns it any more.
func orgName(t orgNamespace, ns string) string {
	if t.org == nil {
		return ns
	}
	return t.org.Name
}

// project returns the Project name in ns, or nil when there is none. A Project created a moment
// ago may not be in the cache yet: before concluding that there is none, it asks the API server.
func (a *admitter) project(ctx context.Context, ns, name string) (*tenancyv1.Project, error) {
	p := &tenancyv1.Project{}
	err := a.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)
	if apierrors.IsNotFound(err) {
		err = a.live.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getting project %s: %w", name, err)
	}
	return p, nil
}

// keepsAnOwner refuses the removal or demotion of m, as stored, when it is an organization-wide
// Owner and the organization would have none left. The decision is serialized per organization
// in the database, which also counts the removals other replicas admitted that this cache may
// not show yet; recorded says that the admitted removal was written there.
func (a *admitter) keepsAnOwner(ctx context.Context, m *tenancyv1.Membership, t orgNamespace, who requester, deletion bool) (recorded bool, err error) {
	if m.Spec.Project != "" || m.Spec.Role != tenancyv1.RoleOwner || t.ending() || m.DeletionTimestamp != nil {
		return false, nil
	}
	owners, err := tenant.Owners(ctx, a.cache, m.Namespace)
	if err != nil {
		return false, err
	}
	uids := []string{string(m.UID)}
	for _, o := range owners {
		if o.DeletionTimestamp == nil && o.UID != m.UID {
			uids = append(uids, string(o.UID))
		}
	}
	// Within the API server's 5 s, so that a database that hangs gets the 503 below.
	dbCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	admitted, err := a.records.AdmitOwnerRemoval(dbCtx, db.OwnerRemoval{
		AdmissionRecord: db.AdmissionRecord{
			ObjectUID:   string(m.UID),
			Namespace:   m.Namespace,
			Target:      "membership/" + m.Name,
			RequestedBy: who.username,
			Deletion:    deletion,
		},
		Owners: uids,
		DryRun: who.dryRun,
	})
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Checking that the organization keeps an Owner", "organization", t.org.Name)
		return false, apierrors.NewServiceUnavailable(fmt.Sprintf(
			"cannot confirm that %s keeps an Owner: the database is unavailable; try again", t.org.Name))
	}
	if !admitted {
		return false, a.refuse(m, field.ErrorList{noOwnerLeft(t.org.Name)}, deletion)
	}
	return !who.dryRun, nil
}

// recordDeletion tells the clean-up who asked for a deletion. It is best effort: without the
// database the deletion goes ahead and audit_log names the object's last-changed-by instead.
func (a *admitter) recordDeletion(ctx context.Context, obj client.Object, namespace, target string, who requester) {
	if who.dryRun {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := a.records.RecordDeletion(ctx, db.AdmissionRecord{
		ObjectUID:   string(obj.GetUID()),
		Namespace:   namespace,
		Target:      target,
		RequestedBy: who.username,
	})
	if err != nil {
		ctrl.LoggerFrom(ctx).Info("Could not record who asked for a deletion", "target", target, "error", err.Error())
	}
}

// refuse turns refusals into the API error a person reads: Invalid for a create or update,
// Forbidden for a deletion (which has no fields to be invalid).
func (a *admitter) refuse(obj client.Object, errs field.ErrorList, deletion bool) error {
	if len(errs) == 0 {
		return nil
	}
	gvk, err := apiutil.GVKForObject(obj, a.scheme)
	if err != nil {
		return err
	}
	if deletion {
		resource := schema.GroupResource{Group: gvk.Group, Resource: strings.ToLower(gvk.Kind) + "s"}
		return apierrors.NewForbidden(resource, obj.GetName(), errors.New(errs.ToAggregate().Error()))
	}
	return apierrors.NewInvalid(gvk.GroupKind(), obj.GetName(), errs)
}
