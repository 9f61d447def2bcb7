package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
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

// desiredRBAC derives the Roles and RoleBindings from the organization's Memberships and APIKeys:
// organization-wide Owners and Admins manage Projects, Memberships and APIKeys; Owners read every
// Secret of the namespace, Admins only those of API keys and of invitations below Owner (listed by
// name, so a new Secret grants nothing until the operator lists it); everyone else, including
// project-scoped members of any role, gets and lists. Project-scoped Admins get no write access
// here because Kubernetes RBAC cannot confine it to their project.
func desiredRBAC(namespace, usernamePrefix string, memberships []tenancyv1.Membership, keys []tenancyv1.APIKey) organizationRBAC {
	var owners, admins, viewers []rbacv1.Subject
	var adminSecrets []string
	for _, k := range keys {
		if k.DeletionTimestamp.IsZero() {
			adminSecrets = append(adminSecrets, k.SecretNameOrDefault())
		}
	}
	for _, m := range memberships {
		if !m.DeletionTimestamp.IsZero() {
			continue
		}
		subject := rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: usernamePrefix + db.NormalizeEmail(m.Spec.User)}
		role := roleOrDefault(m.Spec.Role)
		switch {
		case m.Spec.Project == "" && role == tenancyv1.RoleOwner:
			owners = append(owners, subject)
		case m.Spec.Project == "" && role == tenancyv1.RoleAdmin:
			admins = append(admins, subject)
		default:
			viewers = append(viewers, subject)
		}
		if role != tenancyv1.RoleOwner {
			adminSecrets = append(adminSecrets, m.Name+"-invite")
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

// applyRBAC creates or updates the organization's Roles and RoleBindings, writing only what differs.
func applyRBAC(ctx context.Context, c client.Client, org *tenancyv1.Organization, want organizationRBAC) error {
	label := func(obj client.Object) error {
		obj.SetLabels(mergeMaps(obj.GetLabels(), map[string]string{
			tenancyv1.ManagedByLabel:    tenancyv1.ManagedByValue,
			tenancyv1.OrganizationLabel: org.Name,
		}))
		return controllerutil.SetOwnerReference(org, obj, c.Scheme())
	}
	for _, r := range want.roles {
		current := &rbacv1.Role{}
		err := c.Get(ctx, client.ObjectKeyFromObject(r), current)
		switch {
		case apierrors.IsNotFound(err):
			if err := label(r); err != nil {
				return err
			}
			if err := c.Create(ctx, r); err != nil {
				return fmt.Errorf("creating role %s: %w", r.Name, err)
			}
		case err != nil:
			return fmt.Errorf("getting role %s: %w", r.Name, err)
		case !equality.Semantic.DeepEqual(current.Rules, r.Rules):
			current.Rules = r.Rules
			if err := c.Update(ctx, current); err != nil {
				return fmt.Errorf("updating role %s: %w", r.Name, err)
			}
		}
	}
	for _, b := range want.bindings {
		current := &rbacv1.RoleBinding{}
		err := c.Get(ctx, client.ObjectKeyFromObject(b), current)
		switch {
		case apierrors.IsNotFound(err):
			if err := label(b); err != nil {
				return err
			}
			if err := c.Create(ctx, b); err != nil {
				return fmt.Errorf("creating role binding %s: %w", b.Name, err)
			}
		case err != nil:
			return fmt.Errorf("getting role binding %s: %w", b.Name, err)
		case !equality.Semantic.DeepEqual(current.Subjects, b.Subjects):
			current.Subjects = b.Subjects
			if err := c.Update(ctx, current); err != nil {
				return fmt.Errorf("updating role binding %s: %w", b.Name, err)
			}
		}
	}
	return nil
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
