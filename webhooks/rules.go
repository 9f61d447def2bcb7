package webhooks

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// The rules below are pure: each takes the field path it speaks about and what the cache showed,
// and returns the refusals. The kinds' validators gather them.

var (
	namespacePath = field.NewPath("metadata", "namespace")
	rolePath      = field.NewPath("spec", "role")
	projectPath   = field.NewPath("spec", "project")
	userPath      = field.NewPath("spec", "user")
)

// roleScope is where a role applies: an organization, or one of its projects.
type roleScope struct {
	org     string
	project string
}

func (s roleScope) String() string {
	if s.project == "" {
		return s.org
	}
	return fmt.Sprintf("project %s of %s", s.project, s.org)
}

// path is the field that names the scope: spec.project, or the namespace for the organization.
func (s roleScope) path() *field.Path {
	if s.project == "" {
		return namespacePath
	}
	return projectPath
}

// standingIn says what role someone has in a scope, for refusals.
func standingIn(who string, has tenancyv1.Role, in roleScope) string {
	if has == "" {
		return fmt.Sprintf("%s has no role in %s", who, in)
	}
	return fmt.Sprintf("%s is %s in %s", who, has, in)
}

// needsAdmin refuses a requester below Admin in the scope: creating, changing and deleting
// projects, memberships and API keys is for Admins and Owners.
func needsAdmin(path *field.Path, who string, has tenancyv1.Role, in roleScope, action string) field.ErrorList {
	if has.AtLeast(tenancyv1.RoleAdmin) {
		return nil
	}
	return field.ErrorList{field.Forbidden(path,
		fmt.Sprintf("%s and needs at least Admin there to %s", standingIn(who, has, in), action))}
}

// roleChange is what a request does to an object that gives a role.
type roleChange struct {
	// kind is "membership" or "API key".
	kind string
	// verb is create, change or delete.
	verb string
	// old is the role before (empty on create); new the role after (empty on delete).
	old, new tenancyv1.Role
	// self is true when the membership gives the requester its own role.
	self bool
}

// authorizeRoleChange applies the authority rules to a requester who is no platform admin and
// has role has in the object's scope: at least Admin there; never above its own role, which
// keeps Owners the only ones to grant, demote or remove an Owner; never granting itself a
// membership or raising its own role (a membership of one's own would outlive a demotion of the
// one that allowed it).
func authorizeRoleChange(who string, has tenancyv1.Role, in roleScope, c roleChange) field.ErrorList {
	if errs := needsAdmin(in.path(), who, has, in, c.verb+" "+c.kind+"s"); len(errs) > 0 {
		return errs
	}
	var errs field.ErrorList
	if c.old != "" && !has.AtLeast(c.old) {
		errs = append(errs, field.Forbidden(rolePath,
			fmt.Sprintf("%s and cannot %s", standingIn(who, has, in), touching(c))))
	}
	if c.new != "" && c.new != c.old && !has.AtLeast(c.new) {
		errs = append(errs, field.Forbidden(rolePath,
			fmt.Sprintf("%s and cannot grant %s", standingIn(who, has, in), c.new)))
	}
	if c.self && c.old == "" && c.new != "" {
		errs = append(errs, field.Forbidden(userPath,
			fmt.Sprintf("%s cannot grant themselves a membership; another Admin or Owner must", who)))
	}
	if c.self && c.old != "" && c.new.Rank() > c.old.Rank() {
		errs = append(errs, field.Forbidden(rolePath,
			fmt.Sprintf("%s cannot raise their own role (%s to %s)", who, c.old, c.new)))
	}
	return errs
}

// touching says what a change does to the holder of the old role, for refusals.
func touching(c roleChange) string {
	holder := article(c.old) + " " + string(c.old)
	switch {
	case c.new == "":
		return "remove " + holder
	case c.new.Rank() < c.old.Rank():
		return "demote " + holder
	}
	return fmt.Sprintf("change the %s of %s", c.kind, holder)
}

func article(r tenancyv1.Role) string {
	if r == tenancyv1.RoleOwner || r == tenancyv1.RoleAdmin {
		return "an"
	}
	return "a"
}

// boundNamespace refuses a new object in a namespace that no Organization owns or whose
// Organization is being deleted.
func boundNamespace(ns string, t orgNamespace) field.ErrorList {
	switch {
	case t.org == nil:
		return field.ErrorList{field.Forbidden(namespacePath, fmt.Sprintf(
			"namespace %s is bound to no organization: create an Organization whose spec.namespace is %s, or use an organization's namespace", ns, ns))}
	case t.ending():
		return field.ErrorList{field.Forbidden(namespacePath, fmt.Sprintf(
			"organization %s is being deleted", t.org.Name))}
	}
	return nil
}

// existingProject refuses a spec.project that names no Project (nil) or one being deleted.
func existingProject(name string, project *tenancyv1.Project, org string) field.ErrorList {
	switch {
	case project == nil:
		return field.ErrorList{field.NotFound(projectPath, name)}
	case project.DeletionTimestamp != nil:
		return field.ErrorList{field.Invalid(projectPath, name, fmt.Sprintf("project %s of %s is being deleted", name, org))}
	}
	return nil
}

// withinQuota refuses one more of what when the organization's tier allows no more (limit 0 is
// unlimited).
func withinQuota(path *field.Path, org *tenancyv1.Organization, what string, count, limit int) field.ErrorList {
	if limit == 0 || count < limit {
		return nil
	}
	tier := org.Spec.Tier
	if tier == "" {
		tier = tenancyv1.TierFree
	}
	return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
		"%s has %d of the %d %s its tier %s allows: delete one, or raise the Organization's spec.tier",
		org.Name, count, limit, what, tier))}
}

// MaxAPIKeyLifetime is how far ahead an API key's expiresAt may be.
const MaxAPIKeyLifetime = 365 * 24 * time.Hour

// validExpiry refuses an API key expiry that has passed or is more than a year ahead.
func validExpiry(path *field.Path, expiresAt *metav1.Time, now time.Time) field.ErrorList {
	switch {
	case expiresAt == nil:
		return nil
	case !expiresAt.After(now):
		return field.ErrorList{field.Invalid(path, expiresAt.UTC().Format(time.RFC3339), "must be in the future")}
	case expiresAt.Sub(now) > MaxAPIKeyLifetime:
		return field.ErrorList{field.Invalid(path, expiresAt.UTC().Format(time.RFC3339), fmt.Sprintf(
			"must be at most a year ahead (no later than %s)", now.Add(MaxAPIKeyLifetime).UTC().Format(time.RFC3339)))}
	}
	return nil
}

// noOwnerLeft is the refusal of a removal or demotion that would leave an organization no Owner.
func noOwnerLeft(org string) *field.Error {
	return field.Forbidden(rolePath, fmt.Sprintf(
		"%s would have no Owner left: make another member Owner first, or delete the Organization to end it", org))
}

// schemaPath is a TenantTable's spec.schema.
var schemaPath = field.NewPath("spec", "schema")

// applicationSchema refuses a TenantTable whose table would be in a schema the operator must never
// change (db.ReservedSchema): its own, whose row-level security guards the identities, or
// PostgreSQL's.
func applicationSchema(path *field.Path, schema string) field.ErrorList {
	if !db.ReservedSchema(schema) {
		return nil
	}
	return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
		"schema %s is reserved (the operator's own schema or PostgreSQL's): a TenantTable protects application tables only", schema))}
}

// expiryRequired refuses a new API key without an expiry. The defaulting webhook gives one a year
// ahead, so only a create that did not pass through it arrives here without.
func expiryRequired(path *field.Path, expiresAt *metav1.Time) field.ErrorList {
	if expiresAt != nil {
		return nil
	}
	return field.ErrorList{field.Required(path, "every API key expires, at most a year ahead")}
}

// expiryKept refuses removing an API key's expiry, whoever asks: a key without one would never
// expire, past the one-year limit that binds every key. Moving it stays possible, within a year.
func expiryKept(path *field.Path, old, expiresAt *metav1.Time, now time.Time) field.ErrorList {
	if old == nil || expiresAt != nil {
		return nil
	}
	return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
		"cannot be removed: every API key expires at most a year ahead; set a date no later than %s instead",
		now.Add(MaxAPIKeyLifetime).UTC().Format(time.RFC3339)))}
}
