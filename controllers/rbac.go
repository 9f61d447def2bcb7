package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// Names of the RBAC the operator keeps: the ClusterRoles tenancy-owner and tenancy-viewer, the
// same for every organization, and in every organization namespace the Role tenancy-admin (its
// Secrets are the namespace's own) and a RoleBinding for each of the three, named after it with
// an "s".
const (
	OwnerRoleName  = "tenancy-owner"
	AdminRoleName  = "tenancy-admin"
	ViewerRoleName = "tenancy-viewer"
)

var (
	tenancyResources = []string{"projects", "memberships", "apikeys", "oauthclients"}
	readVerbs        = []string{"get", "list", "watch"}
	writeVerbs       = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
)

// tenancyRule grants verbs on the namespaced tenancy kinds.
func tenancyRule(verbs []string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{tenancyv1.GroupVersion.Group}, Resources: tenancyResources, Verbs: verbs}
}

// organizationRBAC is the RBAC an organization's namespace should hold, with the ClusterRoles
// its bindings refer to.
type organizationRBAC struct {
	clusterRoles []*rbacv1.ClusterRole
	roles        []*rbacv1.Role
	bindings     []*rbacv1.RoleBinding
}

// desiredRBAC derives the Roles and RoleBindings from the organization's Memberships and from the
// Secrets the operator wrote: organization-wide Owners and Admins manage Projects, Memberships,
// APIKeys and OAuthClients; Owners read every Secret of the namespace, Admins only the Secrets the
// operator made for API keys, OAuth clients and invitations below Owner (listed by name, taken
// from the Secrets' controller references rather than from specs, so no spec can point an Admin
// at another Secret); everyone
// else, including project-scoped members of any role, gets and lists. Project-scoped Admins get no
// write access here because Kubernetes RBAC cannot confine it to their project. The Owner and
// Viewer rules are the same in every namespace: they are ClusterRoles, bound per namespace, so an
// organization costs one Role instead of three.
func desiredRBAC(namespace, usernamePrefix string, memberships []tenancyv1.Membership, managedSecrets []corev1.Secret) organizationRBAC {
	var owners, admins, viewers []rbacv1.Subject
	roleOfMembership := map[types.UID]tenancyv1.Role{}
	for _, m := range memberships {
		if !m.DeletionTimestamp.IsZero() {
			continue
		}
		role := m.RoleOrDefault()
		roleOfMembership[m.UID] = role
		subject := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: tenant.Username(usernamePrefix, m.Spec.User)}
		switch {
		case m.Spec.Project == "" && role == tenancyv1.RoleOwner:
			owners = append(owners, subject)
		case m.Spec.Project == "" && role == tenancyv1.RoleAdmin:
			admins = append(admins, subject)
		default:
			viewers = append(viewers, subject)
		}
	}
	var adminSecrets []string
	for _, secret := range managedSecrets {
		owner := metav1.GetControllerOf(&secret)
		if owner == nil || !strings.HasPrefix(owner.APIVersion, tenancyv1.GroupVersion.Group+"/") {
			continue
		}
		switch owner.Kind {
		case "APIKey", "OAuthClient":
			adminSecrets = append(adminSecrets, secret.Name)
		case "Membership":
			if role, ok := roleOfMembership[owner.UID]; ok && role != tenancyv1.RoleOwner {
				adminSecrets = append(adminSecrets, secret.Name)
			}
		}
	}

	adminRules := []rbacv1.PolicyRule{tenancyRule(writeVerbs)}
	// An empty resourceNames list would grant every Secret: leave the rule out instead.
	if len(adminSecrets) > 0 {
		slices.Sort(adminSecrets)
		adminRules = append(adminRules, rbacv1.PolicyRule{
			APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: slices.Compact(adminSecrets),
		})
	}
	adminRole := &rbacv1.Role{Rules: adminRules}
	adminRole.Name, adminRole.Namespace = AdminRoleName, namespace

	binding := func(roleKind, roleName string, subjects []rbacv1.Subject) *rbacv1.RoleBinding {
		slices.SortFunc(subjects, func(a, b rbacv1.Subject) int { return cmp.Compare(a.Name, b.Name) })
		b := &rbacv1.RoleBinding{
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: roleKind, Name: roleName},
			Subjects: slices.CompactFunc(subjects, func(a, b rbacv1.Subject) bool { return a.Name == b.Name }),
		}
		b.Name, b.Namespace = bindingName(roleName), namespace
		return b
	}
	return organizationRBAC{
		clusterRoles: tenantClusterRoles(),
		roles:        []*rbacv1.Role{adminRole},
		bindings: []*rbacv1.RoleBinding{
			binding("ClusterRole", OwnerRoleName, owners),
			binding("Role", AdminRoleName, admins),
			binding("ClusterRole", ViewerRoleName, viewers),
		},
	}
}

// bindingName is the name of the RoleBinding the operator keeps for the Role or ClusterRole
// roleName in an organization namespace.
func bindingName(roleName string) string { return roleName + "s" }

// tenantClusterRoles are the Owner and Viewer rules, which do not depend on the organization.
func tenantClusterRoles() []*rbacv1.ClusterRole {
	clusterRole := func(name string, rules []rbacv1.PolicyRule) *rbacv1.ClusterRole {
		r := &rbacv1.ClusterRole{Rules: rules}
		r.Name = name
		return r
	}
	return []*rbacv1.ClusterRole{
		clusterRole(OwnerRoleName, []rbacv1.PolicyRule{
			tenancyRule(writeVerbs),
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: readVerbs},
		}),
		clusterRole(ViewerRoleName, []rbacv1.PolicyRule{tenancyRule(readVerbs)}),
	}
}

// retiredRoleNames are the namespace Roles that earlier versions kept for Owners and Viewers.
var retiredRoleNames = []string{OwnerRoleName, ViewerRoleName}

// applyRBAC creates or updates the ClusterRoles and the organization's Roles and RoleBindings,
// writing only what differs, then deletes the Owner and Viewer Roles an earlier version left in
// the namespace. The cache holds only labelled objects, so one of these names that exists without
// the label (made by hand, or its label removed) is read from the API server and taken over.
func applyRBAC(ctx context.Context, c client.Client, apiReader client.Reader, org *tenancyv1.Organization, want organizationRBAC) error {
	for _, r := range want.clusterRoles {
		err := applyOne(ctx, c, apiReader, nil, r, &rbacv1.ClusterRole{}, func(current *rbacv1.ClusterRole) bool {
			if equality.Semantic.DeepEqual(current.Rules, r.Rules) && current.AggregationRule == nil {
				return false
			}
			current.Rules, current.AggregationRule = r.Rules, nil
			return true
		})
		if err != nil {
			return fmt.Errorf("cluster role %s: %w", r.Name, err)
		}
	}
	for _, r := range want.roles {
		err := applyOne(ctx, c, apiReader, org, r, &rbacv1.Role{}, func(current *rbacv1.Role) bool {
			if equality.Semantic.DeepEqual(current.Rules, r.Rules) {
				return false
			}
			current.Rules = r.Rules
			return true
		})
		if err != nil {
			return fmt.Errorf("role %s: %w", r.Name, err)
		}
	}
	for _, b := range want.bindings {
		if err := applyBinding(ctx, c, apiReader, org, b); err != nil {
			return fmt.Errorf("role binding %s: %w", b.Name, err)
		}
	}
	for _, name := range retiredRoleNames {
		role := &rbacv1.Role{}
		err := c.Get(ctx, client.ObjectKey{Namespace: org.NamespaceName(), Name: name}, role)
		if err == nil && isManaged(role, org) {
			err = c.Delete(ctx, role, client.Preconditions{UID: &role.UID})
		}
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting the retired role %s: %w", name, err)
		}
	}
	return nil
}

// applyBinding creates or updates one RoleBinding. roleRef is immutable: a binding of our name
// that refers to another role is deleted. One the operator made (an earlier version bound
// namespace Roles for Owners and Viewers) is replaced at once; anyone else's is reported, and the
// next reconcile creates ours.
func applyBinding(ctx context.Context, c client.Client, apiReader client.Reader, org *tenancyv1.Organization, want *rbacv1.RoleBinding) error {
	err := applyOne(ctx, c, apiReader, org, want, &rbacv1.RoleBinding{}, func(current *rbacv1.RoleBinding) bool {
		if equality.Semantic.DeepEqual(current.Subjects, want.Subjects) {
			return false
		}
		current.Subjects = want.Subjects
		return true
	})
	var wrongRef *wrongRoleRefError
	if !errors.As(err, &wrongRef) {
		return err
	}
	// The precondition keeps a cache that lags behind from deleting a binding made since.
	if err := c.Delete(ctx, wrongRef.binding, client.Preconditions{UID: &wrongRef.binding.UID}); client.IgnoreNotFound(err) != nil {
		return err
	}
	if !isManaged(wrongRef.binding, org) {
		return fmt.Errorf("replaced a binding that referred to %s %s", wrongRef.binding.RoleRef.Kind, wrongRef.binding.RoleRef.Name)
	}
	return createManaged(ctx, c, org, want)
}

// applyOne creates want, or updates the existing object when sync changes it or when it lacks the
// operator's labels. An organization's objects (org not nil) carry its label and are owned by it;
// the ClusterRoles belong to no organization.
func applyOne[T client.Object](ctx context.Context, c client.Client, apiReader client.Reader, org *tenancyv1.Organization, want, current T, sync func(T) bool) error {
	key := client.ObjectKeyFromObject(want)
	err := c.Get(ctx, key, current)
	if apierrors.IsNotFound(err) {
		if err = createManaged(ctx, c, org, want); !apierrors.IsAlreadyExists(err) {
			return err
		}
		err = apiReader.Get(ctx, key, current)
	}
	if err != nil {
		return err
	}
	if b, ok := any(current).(*rbacv1.RoleBinding); ok && b.RoleRef != any(want).(*rbacv1.RoleBinding).RoleRef {
		return &wrongRoleRefError{binding: b}
	}
	changed := sync(current)
	if !isManaged(current, org) {
		if err := markManaged(c, current, org); err != nil {
			return err
		}
		changed = true
	}
	if !changed {
		return nil
	}
	return c.Update(ctx, current)
}

func createManaged(ctx context.Context, c client.Client, org *tenancyv1.Organization, obj client.Object) error {
	if err := markManaged(c, obj, org); err != nil {
		return err
	}
	return c.Create(ctx, obj)
}

// wrongRoleRefError reports a RoleBinding of our name that binds some other role.
type wrongRoleRefError struct{ binding *rbacv1.RoleBinding }

func (e *wrongRoleRefError) Error() string {
	return fmt.Sprintf("role binding %s refers to %s %s", e.binding.Name, e.binding.RoleRef.Kind, e.binding.RoleRef.Name)
}

// markManaged labels obj as the operator's and, for an organization's object, as that
// organization's, owned by it.
func markManaged(c client.Client, obj client.Object, org *tenancyv1.Organization) error {
	labels := map[string]string{tenancyv1.ManagedByLabel: tenancyv1.ManagedByValue}
	if org == nil {
		obj.SetLabels(mergeMaps(obj.GetLabels(), labels))
		return nil
	}
	labels[tenancyv1.OrganizationLabel] = org.Name
	obj.SetLabels(mergeMaps(obj.GetLabels(), labels))
	return controllerutil.SetOwnerReference(org, obj, c.Scheme())
}

// isManaged says whether obj carries the operator's labels (and org's, for an organization's object).
func isManaged(obj client.Object, org *tenancyv1.Organization) bool {
	return obj.GetLabels()[tenancyv1.ManagedByLabel] == tenancyv1.ManagedByValue &&
		(org == nil || obj.GetLabels()[tenancyv1.OrganizationLabel] == org.Name)
}

// deleteRBAC removes the organization's Roles and RoleBindings from a namespace it no longer owns.
func deleteRBAC(ctx context.Context, c client.Client, org *tenancyv1.Organization, namespace string) error {
	selector := client.MatchingLabels{tenancyv1.ManagedByLabel: tenancyv1.ManagedByValue, tenancyv1.OrganizationLabel: org.Name}
	if err := c.DeleteAllOf(ctx, &rbacv1.RoleBinding{}, client.InNamespace(namespace), selector); err != nil {
		return fmt.Errorf("deleting role bindings: %w", err)
	}
	if err := c.DeleteAllOf(ctx, &rbacv1.Role{}, client.InNamespace(namespace), selector); err != nil {
		return fmt.Errorf("deleting roles: %w", err)
	}
	return nil
}
