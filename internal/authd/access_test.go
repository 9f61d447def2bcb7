package authd

import (
	"errors"
	"testing"
)

func TestChooseAccess(t *testing.T) {
	const (
		acme  = "11111111-1111-1111-1111-111111111111"
		beta  = "22222222-2222-2222-2222-222222222222"
		web   = "33333333-3333-3333-3333-333333333333"
		api   = "44444444-4444-4444-4444-444444444444"
		idOrg = "55555555-5555-5555-5555-555555555555" // an organization named like acme's id
	)
	str := func(s string) *string { return &s }
	m := func(orgID, orgName string, project *string, projectName *string, role, state string) membership {
		return membership{OrgID: orgID, OrgName: orgName, ProjectID: project, ProjectName: projectName, Role: role, State: state}
	}
	all := []membership{
		m(acme, "acme", nil, nil, "Viewer", "Active"),
		m(acme, "acme", str(web), str("web"), "Admin", "Active"),
		m(beta, "beta", str(api), str("api"), "Member", "Active"),
		m(beta, "beta", nil, nil, "Owner", "Invited"), // grants nothing until accepted
		m(idOrg, acme, nil, nil, "Owner", "Active"),
	}
	cases := []struct {
		reason        string
		ms            []membership
		org, project  string
		wantOrg, role string
		wantProject   string
		wantErr       bool
	}{
		{"several organizations and no name: no organization", all, "", "", "", "", "", false},
		{"by name, the organization role", all, "acme", "", acme, "Viewer", "", false},
		{"by id, never the organization named like it", all, acme, "", acme, "Viewer", "", false},
		{"the name that looks like an id is taken as an id", all, idOrg, "", idOrg, "Owner", "", false},
		{"a project role above the organization's", all, "acme", "web", acme, "Admin", web, false},
		{"the only project membership, when no organization role", all, "beta", "", beta, "Member", api, false},
		{"an invited membership grants nothing", all[3:4], "beta", "", "", "", "", true},
		{"no membership there", all, "gamma", "", "", "", "", true},
		{"a project the user does not belong to", all, "beta", "billing", "", "", "", true},
		{"the only organization, without a name", all[:2], "", "", acme, "Viewer", "", false},
	}
	if _, err := chooseAccess(all[3:4], "beta", ""); !errors.Is(err, errMembershipNotActive) {
		t.Errorf("an invited membership is told apart from none: %v", err)
	}
	if _, err := chooseAccess(all, "gamma", ""); errors.Is(err, errMembershipNotActive) {
		t.Errorf("no membership is not an invited one: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			a, err := chooseAccess(tc.ms, tc.org, tc.project)
			if tc.wantErr {
				if !errors.Is(err, errNoAccess) {
					t.Fatalf("chooseAccess() = %+v, %v; want errNoAccess", a, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := func(p *string) string {
				if p == nil {
					return ""
				}
				return *p
			}
			if got(a.OrgID) != tc.wantOrg || a.Role != tc.role || got(a.ProjectID) != tc.wantProject {
				t.Fatalf("chooseAccess() = org %q role %q project %q; want %q %q %q", got(a.OrgID), a.Role, got(a.ProjectID), tc.wantOrg, tc.role, tc.wantProject)
			}
		})
	}
}
