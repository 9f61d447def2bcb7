package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

func membershipOf(name, user string, role tenancyv1.Role, project string) tenancyv1.Membership {
	return tenancyv1.Membership{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "acme", UID: types.UID("uid-" + name)},
		Spec:       tenancyv1.MembershipSpec{User: user, Role: role, Project: project},
	}
}

// secretControlledBy is a Secret whose controller reference names kind/name of apiVersion.
func secretControlledBy(name, apiVersion, kind, owner string) corev1.Secret {
	s := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "acme"}}
	if kind != "" {
		controller := true
		s.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: apiVersion, Kind: kind, Name: owner, UID: types.UID("uid-" + owner), Controller: &controller,
		}}
	}
	return s
}

func users(names ...string) []rbacv1.Subject {
	subjects := make([]rbacv1.Subject, 0, len(names))
	for _, n := range names {
		subjects = append(subjects, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "oidc:" + n})
	}
	return subjects
}

func TestDesiredRBACBindsEachMemberByRoleAndScope(t *testing.T) {
	leaving := membershipOf("leaving", "leaving@example.com", tenancyv1.RoleOwner, "")
	leaving.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	memberships := []tenancyv1.Membership{
		membershipOf("owner", " Owner@Example.com ", tenancyv1.RoleOwner, ""),
		membershipOf("new-owner", "new-owner@example.com", tenancyv1.RoleOwner, ""),
		membershipOf("admin", "admin@example.com", tenancyv1.RoleAdmin, ""),
		// A project's Admin may not write organization-wide: RBAC cannot confine it to the project.
		membershipOf("web-admin", "web-admin@example.com", tenancyv1.RoleAdmin, "web"),
		membershipOf("member", "member@example.com", tenancyv1.RoleMember, ""),
		membershipOf("defaulted", "defaulted@example.com", "", ""),
		// The same user through a project membership as well: one subject.
		membershipOf("member-web", "MEMBER@example.com", tenancyv1.RoleViewer, "web"),
		leaving,
	}

	got := desiredRBAC("acme", "oidc:", memberships, nil)

	want := map[string]struct {
		roleRef  rbacv1.RoleRef
		subjects []rbacv1.Subject
	}{
		"tenancy-owners": {rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: OwnerRoleName},
			users("new-owner@example.com", "owner@example.com")},
		"tenancy-admins": {rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: AdminRoleName},
			users("admin@example.com")},
		"tenancy-viewers": {rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ViewerRoleName},
			users("defaulted@example.com", "member@example.com", "web-admin@example.com")},
	}
	if len(got.bindings) != len(want) {
		t.Fatalf("%d bindings, want %d", len(got.bindings), len(want))
	}
	for _, b := range got.bindings {
		w, ok := want[b.Name]
		if !ok {
			t.Errorf("unexpected binding %s", b.Name)
			continue
		}
		if b.Namespace != "acme" || b.RoleRef != w.roleRef {
			t.Errorf("binding %s in %q refers to %+v, want namespace acme and %+v", b.Name, b.Namespace, b.RoleRef, w.roleRef)
		}
		if diff := cmp.Diff(w.subjects, b.Subjects); diff != "" {
			t.Errorf("binding %s subjects (-want +got):\n%s", b.Name, diff)
		}
	}

	if len(got.roles) != 1 || got.roles[0].Name != AdminRoleName || got.roles[0].Namespace != "acme" {
		t.Fatalf("roles %+v, want only %s in acme", got.roles, AdminRoleName)
	}
	if diff := cmp.Diff([]rbacv1.PolicyRule{tenancyRule(writeVerbs)}, got.roles[0].Rules); diff != "" {
		t.Errorf("without Secrets of the operator's the Admin Role must not mention Secrets: an empty resourceNames grants them all (-want +got):\n%s", diff)
	}
}

func TestDesiredRBACLetsAdminsReadOnlyTheSecretsBelowOwner(t *testing.T) {
	memberships := []tenancyv1.Membership{
		membershipOf("owner", "owner@example.com", tenancyv1.RoleOwner, ""),
		membershipOf("member", "member@example.com", tenancyv1.RoleMember, ""),
		membershipOf("web-admin", "web-admin@example.com", tenancyv1.RoleAdmin, "web"),
	}
	gone := membershipOf("gone", "gone@example.com", tenancyv1.RoleMember, "")
	gone.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	memberships = append(memberships, gone)
	tenancyAPI := tenancyv1.GroupVersion.String()
	secrets := []corev1.Secret{
		secretControlledBy("z-key-apikey", tenancyAPI, "APIKey", "z-key"),
		secretControlledBy("portal-oauth-client", tenancyAPI, "OAuthClient", "portal"),
		secretControlledBy("member-invite", tenancyAPI, "Membership", "member"),
		secretControlledBy("web-admin-invite", tenancyAPI, "Membership", "web-admin"),
		secretControlledBy("owner-invite", tenancyAPI, "Membership", "owner"),
		secretControlledBy("gone-invite", tenancyAPI, "Membership", "gone"),
		secretControlledBy("unknown-invite", tenancyAPI, "Membership", "never-listed"),
		secretControlledBy("a-deployment-secret", "apps/v1", "Deployment", "web"),
		secretControlledBy("lookalike", "tenancy.dev.example.com/v1", "APIKey", "z-key"),
		secretControlledBy("plain", "", "", ""),
	}

	got := desiredRBAC("acme", "oidc:", memberships, secrets)

	wantRules := []rbacv1.PolicyRule{
		tenancyRule(writeVerbs),
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"},
			ResourceNames: []string{"member-invite", "portal-oauth-client", "web-admin-invite", "z-key-apikey"}},
	}
	if diff := cmp.Diff(wantRules, got.roles[0].Rules); diff != "" {
		t.Errorf("Admin Role rules (-want +got):\n%s", diff)
	}

	if diff := cmp.Diff([]string{"projects", "memberships", "apikeys", "oauthclients"}, got.roles[0].Rules[0].Resources); diff != "" {
		t.Errorf("Owners and Admins manage these kinds, Members and Viewers read them (-want +got):\n%s", diff)
	}

	owner, viewer := got.clusterRoles[0], got.clusterRoles[1]
	if owner.Name != OwnerRoleName || viewer.Name != ViewerRoleName {
		t.Fatalf("cluster roles %s and %s, want %s and %s", owner.Name, viewer.Name, OwnerRoleName, ViewerRoleName)
	}
	wantOwner := []rbacv1.PolicyRule{tenancyRule(writeVerbs), {APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: readVerbs}}
	if diff := cmp.Diff(wantOwner, owner.Rules); diff != "" {
		t.Errorf("Owners manage the kinds and read every Secret of the namespace (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]rbacv1.PolicyRule{tenancyRule(readVerbs)}, viewer.Rules); diff != "" {
		t.Errorf("Viewers read the kinds and no Secret (-want +got):\n%s", diff)
	}
}
