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

// Names of the Roles and RoleBindings the operator keeps in every organization namespace.
const (
	OwnerRoleName  = "tenancy-owner"
	AdminRoleName  = "tenancy-admin"
	ViewerRoleName = "tenancy-viewer"
)

var (
	tenancyResources = []string{"projects", "memberships", "apikeys"}
	readVerbs        = []string{"get", "list", "watch"}
	writeVerbs       = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
)

// organizationRBAC is the RBAC an organization's namespace should hold.
type organizationRBAC struct {
	roles    []*rbacv1.Role
	bindings []*rbacv1.RoleBinding
}

// desiredRBAC derives the Roles and RoleBindings from the organization's Memberships and from the
// Secrets the operator wrote: organization-wide Owners and Admins manage Projects, Memberships and
// APIKeys; Owners read every Secret of the namespace, Admins only the Secrets the operator made for
// API keys and for invitations below Owner (listed by name, taken from the Secrets' controller
// references rather than from specs, so no spec can point an Admin at another Secret); everyone
// else, including project-scoped members of any role, gets and lists. Project-scoped Admins get no
// write access here because Kubernetes RBAC cannot confine it to their project.
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
		case "APIKey":
			adminSecrets = append(adminSecrets, secret.Name)
		case "Membership":
			if role, ok := roleOfMembership[owner.UID]; ok && role != tenancyv1.RoleOwner {
				adminSecrets = append(adminSecrets, secret.Name)
			}
		}
	}

	tenancyRule := func(verbs []string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{tenancyv1.GroupVersion.Group}, Resources: tenancyResources, Verbs: verbs}
	}
	ownerRules := []rbacv1.PolicyRule{
		tenancyRule(writeVerbs),
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: readVerbs},
	}
	adminRules := []rbacv1.PolicyRule{tenancyRule(writeVerbs)}
	// An empty resourceNames list would grant every Secret: leave the rule out instead.
	if len(adminSecrets) > 0 {
		slices.Sort(adminSecrets)
		adminRules = append(adminRules, rbacv1.PolicyRule{
			APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: slices.Compact(adminSecrets),
		})
	}

	role := func(name string, rules []rbacv1.PolicyRule) *rbacv1.Role {
		r := &rbacv1.Role{Rules: rules}
		r.Name, r.Namespace = name, namespace
		return r
	}
	binding := func(name, roleName string, subjects []rbacv1.Subject) *rbacv1.RoleBinding {
		slices.SortFunc(subjects, func(a, b rbacv1.Subject) int { return cmp.Compare(a.Name, b.Name) })
		b := &rbacv1.RoleBinding{
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: roleName},
			Subjects: slices.CompactFunc(subjects, func(a, b rbacv1.Subject) bool { return a.Name == b.Name }),
		}
		b.Name, b.Namespace = name, namespace
		return b
	}
	return organizationRBAC{
		roles: []*rbacv1.Role{
			role(OwnerRoleName, ownerRules),
			role(AdminRoleName, adminRules),
			role(ViewerRoleName, []rbacv1.PolicyRule{tenancyRule(readVerbs)}),
		},
		bindings: []*rbacv1.RoleBinding{
			binding(OwnerRoleName+"s", OwnerRoleName, owners),
			binding(AdminRoleName+"s", AdminRoleName, admins),
			binding(ViewerRoleName+"s", ViewerRoleName, viewers),
		},
	}
}

// applyRBAC creates or updates the organization's Roles and RoleBindings, writing only what
// differs. The cache holds only labelled objects, so one of these names that exists without the
// label (made by hand, or its label removed) is read from the API server and taken over.
func applyRBAC(ctx context.Context, c client.Client, apiReader client.Reader, org *tenancyv1.Organization, want organizationRBAC) error {
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
		err := applyOne(ctx, c, apiReader, org, b, &rbacv1.RoleBinding{}, func(current *rbacv1.RoleBinding) bool {
			if equality.Semantic.DeepEqual(current.Subjects, b.Subjects) {
				return false
			}
			current.Subjects = b.Subjects
			return true
		})
		var wrongRef *wrongRoleRefError
		if errors.As(err, &wrongRef) {
			// roleRef is immutable: a binding of our name that points elsewhere goes, and the next
			// reconcile creates ours.
			err = c.Delete(ctx, wrongRef.binding)
			if err == nil {
				err = fmt.Errorf("replaced a binding that referred to %s %s", wrongRef.binding.RoleRef.Kind, wrongRef.binding.RoleRef.Name)
			}
		}
		if err != nil {
			return fmt.Errorf("role binding %s: %w", b.Name, err)
		}
	}
	return nil
}

// applyOne creates want, or updates the existing object when sync changes it or when it lacks the
// operator's labels.
func applyOne[T client.Object](ctx context.Context, c client.Client, apiReader client.Reader, org *tenancyv1.Organization, want, current T, sync func(T) bool) error {
	key := client.ObjectKeyFromObject(want)
	err := c.Get(ctx, key, current)
	if apierrors.IsNotFound(err) {
		markManaged(want, org.Name)
		if err := controllerutil.SetOwnerReference(org, want, c.Scheme()); err != nil {
			return err
		}
		if err = c.Create(ctx, want); !apierrors.IsAlreadyExists(err) {
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
	if current.GetLabels()[tenancyv1.ManagedByLabel] != tenancyv1.ManagedByValue || current.GetLabels()[tenancyv1.OrganizationLabel] != org.Name {
		markManaged(current, org.Name)
		if err := controllerutil.SetOwnerReference(org, current, c.Scheme()); err != nil {
			return err
		}
		changed = true
	}
	if !changed {
		return nil
	}
	return c.Update(ctx, current)
}

// wrongRoleRefError reports a RoleBinding of our name that binds some other role.
type wrongRoleRefError struct{ binding *rbacv1.RoleBinding }

func (e *wrongRoleRefError) Error() string {
	return fmt.Sprintf("role binding %s refers to %s %s", e.binding.Name, e.binding.RoleRef.Kind, e.binding.RoleRef.Name)
}

func markManaged(obj client.Object, org string) {
	obj.SetLabels(mergeMaps(obj.GetLabels(), map[string]string{
		tenancyv1.ManagedByLabel:    tenancyv1.ManagedByValue,
		tenancyv1.OrganizationLabel: org,
	}))
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
