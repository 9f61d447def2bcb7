package webhooks

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// refusal is a field error reduced to what a person reads.
func refusals(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestAuthorizeRoleChange(t *testing.T) {
	const (
		owner  = tenancyv1.RoleOwner
		admin  = tenancyv1.RoleAdmin
		member = tenancyv1.RoleMember
		viewer = tenancyv1.RoleViewer
	)
	acme := roleScope{org: "acme"}
	web := roleScope{org: "acme", project: "web"}
	cases := []struct {
		reason string
		has    tenancyv1.Role
		in     roleScope
		change roleChange
		want   []string
	}{
		{"an Owner grants Owner", owner, acme, roleChange{kind: "membership", verb: "create", new: owner}, nil},
		{"an Admin grants up to Admin", admin, acme, roleChange{kind: "membership", verb: "create", new: admin}, nil},
		{"an Admin cannot grant Owner", admin, acme, roleChange{kind: "membership", verb: "create", new: owner},
			[]string{"spec.role: Forbidden: alice@example.com is Admin in acme and cannot grant Owner"}},
		{"a Member needs Admin", member, acme, roleChange{kind: "membership", verb: "create", new: viewer},
			[]string{"metadata.namespace: Forbidden: alice@example.com is Member in acme and needs at least Admin there to create memberships"}},
		{"no role at all", "", web, roleChange{kind: "API key", verb: "delete", old: viewer},
			[]string{"spec.project: Forbidden: alice@example.com has no role in project web of acme and needs at least Admin there to delete API keys"}},
		{"an Admin cannot demote an Owner", admin, acme, roleChange{kind: "membership", verb: "change", old: owner, new: admin},
			[]string{"spec.role: Forbidden: alice@example.com is Admin in acme and cannot demote an Owner"}},
		{"an Admin cannot remove an Owner", admin, acme, roleChange{kind: "membership", verb: "delete", old: owner},
			[]string{"spec.role: Forbidden: alice@example.com is Admin in acme and cannot remove an Owner"}},
		{"an Admin cannot touch an Owner's membership at all", admin, acme, roleChange{kind: "membership", verb: "change", old: owner, new: owner},
			[]string{"spec.role: Forbidden: alice@example.com is Admin in acme and cannot change the membership of an Owner"}},
		{"an Admin demotes another Admin", admin, acme, roleChange{kind: "membership", verb: "change", old: admin, new: viewer}, nil},
		{"an Owner demotes an Owner", owner, acme, roleChange{kind: "membership", verb: "change", old: owner, new: member}, nil},
		{"nobody raises their own role", owner, acme, roleChange{kind: "membership", verb: "change", old: member, new: admin, self: true},
			[]string{"spec.role: Forbidden: alice@example.com cannot raise their own role (Member to Admin)"}},
		{"nobody grants themselves a membership", admin, web, roleChange{kind: "membership", verb: "create", new: admin, self: true},
			[]string{"spec.user: Forbidden: alice@example.com cannot grant themselves a membership; another Admin or Owner must"}},
		{"lowering one's own role is fine", admin, acme, roleChange{kind: "membership", verb: "change", old: admin, new: viewer, self: true}, nil},
		{"both refusals at once", admin, acme, roleChange{kind: "membership", verb: "change", old: member, new: owner, self: true},
			[]string{
				"spec.role: Forbidden: alice@example.com is Admin in acme and cannot grant Owner",
				"spec.role: Forbidden: alice@example.com cannot raise their own role (Member to Owner)",
			}},
		{"projects need an organization Admin", member, acme, roleChange{kind: "project", verb: "create"},
			[]string{"metadata.namespace: Forbidden: alice@example.com is Member in acme and needs at least Admin there to create projects"}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := refusals(authorizeRoleChange("alice@example.com", tc.has, tc.in, tc.change))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("authorizeRoleChange() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStandingIn(t *testing.T) {
	s := standing{org: tenancyv1.RoleMember, projects: map[string]tenancyv1.Role{
		"web": tenancyv1.RoleAdmin, "api": tenancyv1.RoleViewer,
	}}
	for project, want := range map[string]tenancyv1.Role{
		"":      tenancyv1.RoleMember, // the organization
		"web":   tenancyv1.RoleAdmin,  // the project role is higher
		"api":   tenancyv1.RoleMember, // the organization role is higher
		"other": tenancyv1.RoleMember, // no project role: the organization's
	} {
		if got := s.in(project); got != want {
			t.Errorf("in(%q) = %q, want %q", project, got, want)
		}
	}
}

func TestValidExpiry(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	cases := []struct {
		reason    string
		expiresAt *metav1.Time
		want      []string
	}{
		{"no expiry", nil, nil},
		{"tomorrow", at(24 * time.Hour), nil},
		{"exactly a year", at(MaxAPIKeyLifetime), nil},
		{"now is too late", at(0), []string{`spec.expiresAt: Invalid value: "2026-11-29T12:00:00Z": must be in the future`}},
		{"past", at(-time.Hour), []string{`spec.expiresAt: Invalid value: "2026-11-29T11:00:00Z": must be in the future`}},
		{"a year and a day", at(MaxAPIKeyLifetime + 24*time.Hour),
			[]string{`spec.expiresAt: Invalid value: "2027-11-30T12:00:00Z": must be at most a year ahead (no later than 2027-11-29T12:00:00Z)`}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := refusals(validExpiry(expiresAtPath, tc.expiresAt, now))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("validExpiry() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWithinQuota(t *testing.T) {
	org := func(tier tenancyv1.Tier) *tenancyv1.Organization {
		o := &tenancyv1.Organization{Spec: tenancyv1.OrganizationSpec{Tier: tier}}
		o.Name = "acme"
		return o
	}
	cases := []struct {
		reason       string
		org          *tenancyv1.Organization
		count, limit int
		want         []string
	}{
		{"room left", org(tenancyv1.TierFree), 2, 3, nil},
		{"full", org(tenancyv1.TierFree), 3, 3,
			[]string{"metadata.namespace: Forbidden: acme has 3 of the 3 projects its tier Free allows: delete one, or raise the Organization's spec.tier"}},
		{"an unset tier is Free", org(""), 5, 3,
			[]string{"metadata.namespace: Forbidden: acme has 5 of the 3 projects its tier Free allows: delete one, or raise the Organization's spec.tier"}},
		{"unlimited", org(tenancyv1.TierEnterprise), 100000, 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := refusals(withinQuota(namespacePath, tc.org, "projects", tc.count, tc.limit))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("withinQuota() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTierLimits(t *testing.T) {
	for tier, want := range map[tenancyv1.Tier]tenancyv1.TierLimits{
		"":                       {Projects: 3, Members: 10, APIKeys: 5},
		tenancyv1.TierFree:       {Projects: 3, Members: 10, APIKeys: 5},
		tenancyv1.TierPro:        {Projects: 50, Members: 500, APIKeys: 100},
		tenancyv1.TierEnterprise: {},
	} {
		if got := tier.Limits(); got != want {
			t.Errorf("%q.Limits() = %+v, want %+v", tier, got, want)
		}
	}
}

func TestBoundNamespace(t *testing.T) {
	acme := &tenancyv1.Organization{}
	acme.Name = "acme"
	ending := acme.DeepCopy()
	ending.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	cases := []struct {
		reason string
		t      orgNamespace
		want   []string
	}{
		{"bound", orgNamespace{org: acme}, nil},
		{"nobody's", orgNamespace{}, []string{"metadata.namespace: Forbidden: namespace team-x is bound to no organization: " +
			"create an Organization whose spec.namespace is team-x, or use an organization's namespace"}},
		{"ending", orgNamespace{org: ending}, []string{"metadata.namespace: Forbidden: organization acme is being deleted"}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, refusals(boundNamespace("team-x", tc.t))); diff != "" {
				t.Errorf("boundNamespace() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExistingProject(t *testing.T) {
	web := &tenancyv1.Project{}
	deleting := web.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	cases := []struct {
		reason  string
		project *tenancyv1.Project
		want    []string
	}{
		{"exists", web, nil},
		{"missing", nil, []string{`spec.project: Not found: "web"`}},
		{"being deleted", deleting, []string{`spec.project: Invalid value: "web": project web of acme is being deleted`}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, refusals(existingProject("web", tc.project, "acme"))); diff != "" {
				t.Errorf("existingProject() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTenancyEmail(t *testing.T) {
	cases := []struct {
		username, prefix, want string
	}{
		{"Alice@Example.com", "", "alice@example.com"},
		{"oidc:alice@example.com", "oidc:", "alice@example.com"},
		{"alice@example.com", "oidc:", ""}, // not from the OIDC authenticator
		{"system:serviceaccount:ns:sa", "", ""},
		{"admin", "", ""}, // not an email
	}
	for _, tc := range cases {
		if got := tenancyEmail(tc.username, tc.prefix); got != tc.want {
			t.Errorf("tenancyEmail(%q, %q) = %q, want %q", tc.username, tc.prefix, got, tc.want)
		}
	}
}

func TestApplicationSchema(t *testing.T) {
	cases := []struct {
		reason string
		schema string
		want   []string
	}{
		{"an application schema", "public", nil},
		{"another application schema", "billing", nil},
		{"a name that only contains tenancy", "tenancy_app_data", nil},
		{"pg_ only as a prefix counts", "app_pg_", nil},
		{"the operator's own schema", "tenancy",
			[]string{"spec.schema: Forbidden: schema tenancy is reserved (the operator's own schema or PostgreSQL's): a TenantTable protects application tables only"}},
		{"PostgreSQL's catalog", "pg_catalog",
			[]string{"spec.schema: Forbidden: schema pg_catalog is reserved (the operator's own schema or PostgreSQL's): a TenantTable protects application tables only"}},
		{"the information schema", "information_schema",
			[]string{"spec.schema: Forbidden: schema information_schema is reserved (the operator's own schema or PostgreSQL's): a TenantTable protects application tables only"}},
		{"TOAST", "pg_toast",
			[]string{"spec.schema: Forbidden: schema pg_toast is reserved (the operator's own schema or PostgreSQL's): a TenantTable protects application tables only"}},
		{"a session's temporary schema", "pg_temp_3",
			[]string{"spec.schema: Forbidden: schema pg_temp_3 is reserved (the operator's own schema or PostgreSQL's): a TenantTable protects application tables only"}},
		{"a temporary schema's TOAST", "pg_toast_temp_3",
			[]string{"spec.schema: Forbidden: schema pg_toast_temp_3 is reserved (the operator's own schema or PostgreSQL's): a TenantTable protects application tables only"}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := refusals(applicationSchema(field.NewPath("spec", "schema"), tc.schema))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("applicationSchema(%q) mismatch (-want +got):\n%s", tc.schema, diff)
			}
		})
	}
}

func TestAPIKeyExpiryStays(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	removed := `spec.expiresAt: Forbidden: cannot be removed: every API key expires at most a year ahead; set a date no later than 2027-11-29T12:00:00Z instead`
	cases := []struct {
		reason         string
		old, expiresAt *metav1.Time
		want           []string
	}{
		{"kept", at(time.Hour), at(time.Hour), nil},
		{"moved (validExpiry decides how far)", at(time.Hour), at(48 * time.Hour), nil},
		{"removed", at(time.Hour), nil, []string{removed}},
		{"removed after it passed", at(-time.Hour), nil, []string{removed}},
		{"a key from before expiries were required, left without", nil, nil, nil},
		{"given one", nil, at(time.Hour), nil},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			got := refusals(expiryKept(expiresAtPath, tc.old, tc.expiresAt, now))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("expiryKept() mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff([]string{`spec.expiresAt: Required value: every API key expires, at most a year ahead`},
		refusals(expiryRequired(expiresAtPath, nil))); diff != "" {
		t.Errorf("expiryRequired(nil) mismatch (-want +got):\n%s", diff)
	}
	if got := expiryRequired(expiresAtPath, at(time.Hour)); len(got) > 0 {
		t.Errorf("expiryRequired refused a key with an expiry: %v", got)
	}
}
