package authd

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// errNoAccess is a request for an organization or project the user has no active membership in.
var errNoAccess = errors.New("no access")

// errMembershipNotActive is a request for an organization where the user's membership is still
// Invited: it grants nothing until its own invitation is accepted.
var errMembershipNotActive = fmt.Errorf("%w: membership not active", errNoAccess)

// access is what a token grants: the organization (or none) and project it is for, and the
// role it has there.
type access struct {
	tenantIDs
	OrgName string
	Role    string
	// RequireMFA: the organization serves only sessions that began with a second factor.
	RequireMFA bool
}

// mfaRequired refuses a session without a second factor in an organization that requires one.
func mfaRequired(org string) *problem {
	return &problem{Status: http.StatusForbidden, Code: "mfa_enrollment_required", Message: fmt.Sprintf(
		"organization %s requires two-factor authentication: enrol an authenticator on your account page (/account) "+
			"or with POST /api/v1/me/mfa/totp, then log in again with its code", org)}
}

// chooseAccess picks what a user's token grants from their memberships (Invited ones grant
// nothing): in organization org (a name or id) and project (a name or id), or, without org, the
// user's only organization, or else no organization at all (a token only /auth/me accepts).
// Without project, the organization-wide role applies, or the only project membership the user
// has there.
func chooseAccess(all []membership, org, project string) (access, error) {
	var active []membership
	for _, m := range all {
		if m.State == "Active" {
			active = append(active, m)
		}
	}
	if org == "" {
		orgs := map[string]bool{}
		for _, m := range active {
			orgs[m.OrgID] = true
		}
		if len(orgs) != 1 {
			if project != "" {
				return access{}, fmt.Errorf("%w: name the organization of project %s", errNoAccess, project)
			}
			return access{}, nil
		}
		org = active[0].OrgID
	}
	// One organization: by id when org looks like one, else by name (a name may look like an
	// id of another organization; it must never mix the two).
	byID := uuidPattern.MatchString(org)
	orgID := ""
	for _, m := range active {
		if (byID && m.OrgID == org) || (!byID && m.OrgName == org) {
			orgID = m.OrgID
			break
		}
	}
	var inOrg []membership
	for _, m := range active {
		if orgID != "" && m.OrgID == orgID {
			inOrg = append(inOrg, m)
		}
	}
	if len(inOrg) == 0 {
		if slices.ContainsFunc(all, func(m membership) bool { return (byID && m.OrgID == org) || (!byID && m.OrgName == org) }) {
			return access{}, fmt.Errorf("%w: your membership in organization %s is Invited; accept its invitation, "+
				"signed in as this account, to activate it", errMembershipNotActive, org)
		}
		return access{}, fmt.Errorf("%w: no active membership in organization %s", errNoAccess, org)
	}
	a := access{tenantIDs: tenantIDs{OrgID: &inOrg[0].OrgID}, OrgName: inOrg[0].OrgName, RequireMFA: inOrg[0].requireMFA}
	orgRole := ""
	var projects []membership
	for _, m := range inOrg {
		if m.ProjectID == nil {
			orgRole = m.Role
		} else {
			projects = append(projects, m)
		}
	}
	switch {
	case project != "":
		a.Role = orgRole
		found := slices.IndexFunc(projects, func(m membership) bool { return *m.ProjectID == project || *m.ProjectName == project })
		if found >= 0 {
			a.ProjectID = projects[found].ProjectID
			if tenancyv1.Role(projects[found].Role).Rank() > tenancyv1.Role(a.Role).Rank() {
				a.Role = projects[found].Role
			}
		}
		if a.ProjectID == nil {
			if orgRole == "" {
				return access{}, fmt.Errorf("%w: no active membership in project %s of %s", errNoAccess, project, a.OrgName)
			}
			return access{}, fmt.Errorf("%w: project %s is not one of %s's projects you belong to; "+
				"an organization-wide token covers every project", errNoAccess, project, a.OrgName)
		}
	case orgRole != "":
		a.Role = orgRole
	case len(projects) == 1:
		a.ProjectID, a.Role = projects[0].ProjectID, projects[0].Role
	default:
		names := make([]string, 0, len(projects))
		for _, m := range projects {
			names = append(names, *m.ProjectName)
		}
		return access{}, fmt.Errorf("%w: you belong to several projects of %s (%s): name one", errNoAccess, a.OrgName, strings.Join(names, ", "))
	}
	return a, nil
}

// accessErrorCode is the error code of a refused choice of organization or project.
func accessErrorCode(err error) string {
	if errors.Is(err, errMembershipNotActive) {
		return "membership_not_active"
	}
	return "access_denied"
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
