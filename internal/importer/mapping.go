package importer

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// Mapping says where the old system keeps each kind of thing: the table and column names of its
// schema. Every field has a default (DefaultMapping), so a mapping file names only what differs.
// A table left empty ("") means the source has no such table; an optional column left empty
// means the source has no such column.
type Mapping struct {
	// Source names the old system; it keys the import's ids (imported audit rows, generated row
	// ids and key ids), so two imports of the same source agree and two sources never collide.
	Source string `json:"source"`
	// Schema is the PostgreSQL schema of the old tables.
	Schema string `json:"schema"`

	Organizations           OrganizationsMapping `json:"organizations"`
	Projects                ProjectsMapping      `json:"projects"`
	Users                   UsersMapping         `json:"users"`
	OrganizationMemberships MembershipsMapping   `json:"organizationMemberships"`
	ProjectMemberships      MembershipsMapping   `json:"projectMemberships"`
	APIKeys                 APIKeysMapping       `json:"apiKeys"`
	AuditLogs               AuditLogsMapping     `json:"auditLogs"`
	DomainTables            DomainTablesMapping  `json:"domainTables"`

	// Roles maps the old role names to Owner, Admin, Member or Viewer. Without an entry, a name
	// that equals one of those four ignoring case is that role; any other is reported.
	Roles map[string]string `json:"roles,omitempty"`
}

// OrganizationsMapping locates the organizations.
type OrganizationsMapping struct {
	Table string `json:"table"`
	ID    string `json:"id"`
	// Name becomes the Organization's name and namespace: a DNS label (a slug).
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
	Tier        string `json:"tier"`
	// Tiers maps the old subscription tiers to Free, Pro or Enterprise; without an entry a value
	// that equals one of those ignoring case is that tier, and an empty one is Free.
	Tiers map[string]string `json:"tiers,omitempty"`
}

// ProjectsMapping locates the projects.
type ProjectsMapping struct {
	Table        string `json:"table"`
	ID           string `json:"id"`
	Organization string `json:"organization"`
	Name         string `json:"name"`
	DisplayName  string `json:"displayName"`
}

// UsersMapping locates the people.
type UsersMapping struct {
	Table        string `json:"table"`
	ID           string `json:"id"`
	Email        string `json:"email"`
	DisplayName  string `json:"displayName"`
	PasswordHash string `json:"passwordHash"`
	// EmailVerified is a boolean or timestamp column: true or a time means the old system proved
	// the address. Empty: the import vouches for every address, as a platform admin may.
	EmailVerified string `json:"emailVerified"`
	CreatedAt     string `json:"createdAt"`
}

// MembershipsMapping locates organization or project memberships. Scope is the organization
// column of organization memberships and the project column of project memberships.
type MembershipsMapping struct {
	Table string `json:"table"`
	Scope string `json:"scope"`
	User  string `json:"user"`
	Role  string `json:"role"`
}

// APIKeysMapping locates the old API keys.
type APIKeysMapping struct {
	Table        string `json:"table"`
	ID           string `json:"id"`
	Organization string `json:"organization"`
	Project      string `json:"project"`
	Name         string `json:"name"`
	Role         string `json:"role"`
	// Hash holds SHA-256 of the whole key, encoded as HashEncoding says (hex, base64 or bytea).
	Hash         string `json:"hash"`
	HashEncoding string `json:"hashEncoding"`
	ExpiresAt    string `json:"expiresAt"`
	RevokedAt    string `json:"revokedAt"`
}

// AuditLogsMapping locates the old audit log.
type AuditLogsMapping struct {
	Table        string `json:"table"`
	ID           string `json:"id"`
	Organization string `json:"organization"`
	// Actor is the user id of whoever acted; an id of no imported user is kept as it was.
	Actor   string `json:"actor"`
	Action  string `json:"action"`
	Target  string `json:"target"`
	Details string `json:"details"`
	At      string `json:"at"`
}

// DomainTablesMapping says how to recognize the application's own tables: every other table of
// the schema, but those excluded.
type DomainTablesMapping struct {
	OrganizationColumn string   `json:"organizationColumn"`
	ProjectColumn      string   `json:"projectColumn"`
	Exclude            []string `json:"exclude,omitempty"`
}

// DefaultMapping is the shape the import expects when a mapping file says nothing: the tables
// organizations, projects, users, organization_memberships, project_memberships, api_keys and
// audit_logs of the schema public.
func DefaultMapping() Mapping {
	return Mapping{
		Source: "legacy",
		Schema: "public",
		Organizations: OrganizationsMapping{Table: "organizations", ID: "id", Name: "slug", DisplayName: "name",
			Tier: "subscription_tier"},
		Projects: ProjectsMapping{Table: "projects", ID: "id", Organization: "organization_id", Name: "slug",
			DisplayName: "name"},
		Users: UsersMapping{Table: "users", ID: "id", Email: "email", DisplayName: "full_name",
			PasswordHash: "password_hash", CreatedAt: "created_at"},
		OrganizationMemberships: MembershipsMapping{Table: "organization_memberships", Scope: "organization_id",
			User: "user_id", Role: "role"},
		ProjectMemberships: MembershipsMapping{Table: "project_memberships", Scope: "project_id", User: "user_id",
			Role: "role"},
		APIKeys: APIKeysMapping{Table: "api_keys", ID: "id", Organization: "organization_id", Project: "project_id",
			Name: "name", Role: "role", Hash: "key_hash", HashEncoding: "hex", ExpiresAt: "expires_at",
			RevokedAt: "revoked_at"},
		AuditLogs: AuditLogsMapping{Table: "audit_logs", ID: "id", Organization: "organization_id",
			Actor: "actor_id", Action: "action", Target: "target", Details: "metadata", At: "created_at"},
		DomainTables: DomainTablesMapping{OrganizationColumn: "organization_id", ProjectColumn: "project_id"},
	}
}

// LoadMapping reads a mapping file over the defaults; path "" gives the defaults. Unknown keys
// are refused, so a misspelt column name is not silently ignored.
func LoadMapping(path string) (Mapping, error) {
	m := DefaultMapping()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return Mapping{}, fmt.Errorf("reading the mapping: %w", err)
		}
		if err := yaml.UnmarshalStrict(raw, &m); err != nil {
			return Mapping{}, fmt.Errorf("mapping %s: %w", path, err)
		}
	}
	if errs := m.validate(); len(errs) > 0 {
		return Mapping{}, fmt.Errorf("mapping %s: %w", path, errs.ToAggregate())
	}
	return m, nil
}

var (
	sourceName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	roleNames  = []string{"Owner", "Admin", "Member", "Viewer"}
	tierNames  = []string{"Free", "Pro", "Enterprise"}
)

// validate checks what the mapping itself says; whether its tables and columns exist is checked
// against the source.
func (m Mapping) validate() field.ErrorList {
	var errs field.ErrorList
	if !sourceName.MatchString(m.Source) {
		errs = append(errs, field.Invalid(field.NewPath("source"), m.Source, "must be a lower-case name of letters, digits and '-' (it keys the import's ids)"))
	}
	if m.Schema == "" {
		errs = append(errs, field.Required(field.NewPath("schema"), "the schema of the old tables"))
	}
	required := []struct {
		path  *field.Path
		table string
		cols  map[string]string
	}{
		{field.NewPath("organizations"), m.Organizations.Table, map[string]string{"id": m.Organizations.ID, "name": m.Organizations.Name}},
		{field.NewPath("users"), m.Users.Table, map[string]string{"id": m.Users.ID, "email": m.Users.Email}},
		{field.NewPath("projects"), m.Projects.Table, map[string]string{"id": m.Projects.ID, "organization": m.Projects.Organization, "name": m.Projects.Name}},
		{field.NewPath("organizationMemberships"), m.OrganizationMemberships.Table, map[string]string{"scope": m.OrganizationMemberships.Scope, "user": m.OrganizationMemberships.User, "role": m.OrganizationMemberships.Role}},
		{field.NewPath("projectMemberships"), m.ProjectMemberships.Table, map[string]string{"scope": m.ProjectMemberships.Scope, "user": m.ProjectMemberships.User, "role": m.ProjectMemberships.Role}},
		{field.NewPath("apiKeys"), m.APIKeys.Table, map[string]string{"id": m.APIKeys.ID, "organization": m.APIKeys.Organization, "name": m.APIKeys.Name, "role": m.APIKeys.Role}},
		{field.NewPath("auditLogs"), m.AuditLogs.Table, map[string]string{"id": m.AuditLogs.ID, "action": m.AuditLogs.Action, "at": m.AuditLogs.At}},
	}
	for i, r := range required {
		if r.table == "" {
			if i < 2 {
				errs = append(errs, field.Required(r.path.Child("table"), "an import needs organizations and users"))
			}
			continue
		}
		for col, name := range r.cols {
			if name == "" {
				errs = append(errs, field.Required(r.path.Child(col), "the column is needed when the table is mapped"))
			}
		}
	}
	if m.Projects.Table == "" && m.ProjectMemberships.Table != "" {
		errs = append(errs, field.Required(field.NewPath("projects", "table"), "project memberships need the projects table"))
	}
	switch m.APIKeys.HashEncoding {
	case "hex", "base64", "bytea":
	default:
		errs = append(errs, field.NotSupported(field.NewPath("apiKeys", "hashEncoding"), m.APIKeys.HashEncoding, []string{"hex", "base64", "bytea"}))
	}
	for from, to := range m.Roles {
		if !slices.Contains(roleNames, to) {
			errs = append(errs, field.NotSupported(field.NewPath("roles").Key(from), to, roleNames))
		}
	}
	for from, to := range m.Organizations.Tiers {
		if !slices.Contains(tierNames, to) {
			errs = append(errs, field.NotSupported(field.NewPath("organizations", "tiers").Key(from), to, tierNames))
		}
	}
	if m.DomainTables.OrganizationColumn == "" {
		errs = append(errs, field.Required(field.NewPath("domainTables", "organizationColumn"), "the column that names a row's organization"))
	}
	// These names go into the SQL the import writes for the application's tables.
	for path, name := range map[*field.Path]string{
		field.NewPath("schema"): m.Schema, field.NewPath("domainTables", "organizationColumn"): m.DomainTables.OrganizationColumn,
	} {
		if name != "" && !scriptSafe(name) {
			errs = append(errs, field.Invalid(path, name, "must be printable, without '$' or '\\'"))
		}
	}
	if c := m.DomainTables.ProjectColumn; c != "" && !scriptSafe(c) {
		errs = append(errs, field.Invalid(field.NewPath("domainTables", "projectColumn"), c, "must be printable, without '$' or '\\'"))
	}
	return errs
}

// role maps an old role name to a Tenancy role.
func (m Mapping) role(old string) (string, error) {
	if to, ok := m.Roles[old]; ok {
		return to, nil
	}
	for _, r := range roleNames {
		if strings.EqualFold(strings.TrimSpace(old), r) {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q (map it under roles: in the mapping file to one of %s)", old, strings.Join(roleNames, ", "))
}

// tier maps an old subscription tier to a Tenancy tier.
func (m Mapping) tier(old string) (string, error) {
	if to, ok := m.Organizations.Tiers[old]; ok {
		return to, nil
	}
	if strings.TrimSpace(old) == "" {
		return "Free", nil
	}
	for _, t := range tierNames {
		if strings.EqualFold(strings.TrimSpace(old), t) {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown tier %q (map it under organizations.tiers: in the mapping file to one of %s)", old, strings.Join(tierNames, ", "))
}
