package importer

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"k8s.io/apimachinery/pkg/util/validation"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/apikey"
	"github.com/tenancy-dev/tenancy/internal/authd"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// Plan is what an import writes, decided from the source before anything is written: the same
// source and mapping always give the same plan, so a second run finds everything in place.
type Plan struct {
	// schema holds the application's tables.
	schema        string
	Organizations []*Organization
	Users         []User
	AuditRows     []AuditRow
	Tables        []TableProposal
	// Problems are the rows the import cannot take as they are: each is skipped and named.
	Problems []Problem
	// Notes are changes the import made to fit Tenancy's rules (a renamed slug, a demoted key).
	Notes []Problem
	// Skipped counts rows left out on purpose (revoked or expired keys), by reason.
	Skipped map[string]int
}

// Problem is one line of the report about one source row.
type Problem struct {
	Row     string // e.g. "users id=17" or "organization_memberships (organization_id=…, user_id=…)"
	Message string
}

func (p Problem) String() string { return p.Row + ": " + p.Message }

// Organization is one Organization to write, with what lives in its namespace.
type Organization struct {
	SourceID    string
	RowID       string // the row id it gets: the old id when it is a UUID
	Name        string
	DisplayName string
	Tier        string
	Projects    []Project
	Memberships []Membership
	APIKeys     []APIKey
}

// Project is one Project to write.
type Project struct {
	SourceID, RowID, Name, DisplayName string
}

// Membership is one Membership to write.
type Membership struct {
	Name, Email, Role, Project string
}

// APIKey is one APIKey to write; when the old key's hash is usable, the old key keeps working
// beside the new one until OldKeyExpires.
type APIKey struct {
	SourceID, Name, Role, Project string
	ExpiresAt                     *time.Time // the new key's, when the old one had an expiry within a year
	// OldKeyID is the client_id the old key is known by (empty when its hash is not usable).
	OldKeyID      string
	OldKeyHash    []byte
	OldKeyExpires time.Time
	ProjectRowID  string
}

// User is one row of tenancy.users.
type User struct {
	SourceID, ID, Email, DisplayName, PasswordHash string
	Verified                                       bool
	CreatedAt                                      *time.Time
}

// AuditRow is one imported audit row.
type AuditRow struct {
	ImportID string
	At       time.Time
	Actor    string
	// ActorSourceID is the old id of the user who acted, when the import takes that user.
	ActorSourceID  string
	Action, Target string
	OrganizationID string
	Details        map[string]any
}

// TableProposal says what an application table needs: a TenantTable, or first the column.
type TableProposal struct {
	Table              string
	TenantTable        string // the TenantTable's name
	OrganizationColumn string
	ProjectColumn      string
	// MissingColumnSQL is set when the table lacks the organization column: the lock-safe steps.
	MissingColumnSQL string
	// Warnings name what stands in the way of isolation (policies of the old system, a column of
	// the wrong type).
	Warnings []string
}

// Options are the choices an import makes beyond the mapping.
type Options struct {
	// OldKeysUntil is when imported keys stop working.
	OldKeysUntil time.Time
	// Now is the import's clock (expired keys are not imported).
	Now time.Time
	// OperatorNamespace is reserved: no organization may take it.
	OperatorNamespace string
	// Cluster is what the cluster holds already; nil when the import has no cluster to ask.
	Cluster *ClusterState
	// AdoptNamespaces are existing namespaces that organizations of their name may adopt.
	AdoptNamespaces []string
}

// ClusterState is what the cluster holds that an import must not take over.
type ClusterState struct {
	// Namespaces are the namespaces that exist.
	Namespaces map[string]bool
	// Organizations are the Organizations that exist, by name: the source that imported each (its
	// tenancy.dev/imported-from label) and its row id annotation.
	Organizations map[string]ImportedObject
	// TenantTables are the TenantTables that exist, by name: the schema.table each is for.
	TenantTables map[string]string
}

// ImportedObject is what tells an object an import made from one it did not.
type ImportedObject struct{ Source, RowID string }

var (
	nonSlug      = regexp.MustCompile(`[^a-z0-9]+`)
	reservedName = []string{"default", "kube-system", "kube-public", "kube-node-lease"}
)

// slug turns s into a DNS label of at most max characters: lower case, runs of anything else
// become '-'.
func slug(s string, max int) string {
	out := strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(out) > max {
		out = strings.TrimRight(out[:max], "-")
	}
	return out
}

// uniqueName returns base, or base with a short suffix derived from seed when taken is true for
// base; the result is at most 63 characters.
func uniqueName(base, seed string, taken func(string) bool) string {
	if base == "" {
		base = "x"
	}
	if len(base) > 63 {
		base = strings.TrimRight(base[:63], "-")
	}
	if !taken(base) {
		return base
	}
	sum := sha256.Sum256([]byte(seed))
	suffix := hex.EncodeToString(sum[:])[:6]
	if len(base) > 56 {
		base = strings.TrimRight(base[:56], "-")
	}
	return base + "-" + suffix
}

// rowID keeps an old id that is a UUID, and derives one from it otherwise, the same each time.
func rowID(source, table, old string) string {
	if id, err := uuid.Parse(old); err == nil {
		return id.String()
	}
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("tenancy-import:"+source+"/"+table+"/"+old)).String()
}

// importedKeyID is the client_id an imported key gets: imp_ and 12 characters derived from its
// old id, the same at each import.
func importedKeyID(source, old string) string {
	sum := sha256.Sum256([]byte("tenancy-import:" + source + "/api_keys/" + old))
	return "imp_" + apikey.Base62(sum[:9], 12)
}

// planner builds a Plan, keeping the maps from old ids to what they became.
type planner struct {
	m        Mapping
	opts     Options
	plan     *Plan
	orgs     map[string]*Organization // old organization id →
	projects map[string]struct {
		org *Organization
		p   Project
	} // old project id →
	users map[string]*User // old user id →
}

// NewPlan decides what to write for the source's rows.
func newPlan(d *sourceData, m Mapping, opts Options) *Plan {
	p := &planner{m: m, opts: opts, plan: &Plan{schema: m.Schema, Skipped: map[string]int{}}, orgs: map[string]*Organization{},
		projects: map[string]struct {
			org *Organization
			p   Project
		}{}, users: map[string]*User{}}
	p.organizations(d.Organizations)
	p.projectRows(d.Projects)
	p.userRows(d.Users)
	p.membershipRows(d.OrganizationMemberships, d.ProjectMemberships)
	p.apiKeyRows(d.APIKeys)
	p.auditRows(d.AuditRows)
	p.tables(d.Tables)
	p.quotas()
	return p.plan
}

func (p *planner) problem(row, format string, args ...any) {
	p.plan.Problems = append(p.plan.Problems, Problem{Row: row, Message: fmt.Sprintf(format, args...)})
}

func (p *planner) note(row, format string, args ...any) {
	p.plan.Notes = append(p.plan.Notes, Problem{Row: row, Message: fmt.Sprintf(format, args...)})
}

func (p *planner) organizations(rows []sourceOrganization) {
	table := p.m.Organizations.Table
	byName := map[string]string{}
	for _, o := range rows {
		row := fmt.Sprintf("%s id=%s", table, o.ID)
		name := slug(o.Name, 63)
		switch {
		case o.ID == "":
			p.problem(row, "the id is empty")
			continue
		case name == "":
			p.problem(row, "%s %q gives no usable name (letters or digits are needed)", p.m.Organizations.Name, o.Name)
			continue
		case slices.Contains(reservedName, name) || strings.HasPrefix(name, "kube-") || name == p.opts.OperatorNamespace:
			p.problem(row, "name %q is a namespace Kubernetes or Tenancy reserves; rename the organization in the source", name)
			continue
		}
		if other, taken := byName[name]; taken {
			p.problem(row, "name %q is taken by %s id=%s already; names must be unique once lower-cased", name, table, other)
			continue
		}
		id := rowID(p.m.Source, table, o.ID)
		if msg := p.clusterConflict(name, id); msg != "" {
			p.problem(row, "%s", msg)
			continue
		}
		if name != o.Name {
			p.note(row, "name %q becomes %q (a namespace name: lower-case letters, digits and '-')", o.Name, name)
		}
		tier, err := p.m.tier(o.Tier)
		if err != nil {
			p.problem(row, "%v", err)
			continue
		}
		byName[name] = o.ID
		display := o.DisplayName
		if len(display) > 200 {
			display = display[:200]
		}
		org := &Organization{SourceID: o.ID, RowID: id, Name: name, DisplayName: display, Tier: tier}
		p.orgs[o.ID] = org
		p.plan.Organizations = append(p.plan.Organizations, org)
	}
}

// clusterConflict says why an organization may not become the Organization name, or "": an
// Organization of that name that this source did not import (its Owners are others), or a
// namespace that exists without one, whose Secrets the organization's Owners would read once it
// adopted it.
func (p *planner) clusterConflict(name, rowID string) string {
	c := p.opts.Cluster
	if c == nil {
		return ""
	}
	if existing, ok := c.Organizations[name]; ok {
		if existing.Source == p.m.Source && existing.RowID == rowID {
			return "" // an earlier run of this import made it
		}
		return fmt.Sprintf("an Organization %s exists already that this import did not make; rename the organization in the source", name)
	}
	if c.Namespaces[name] && !slices.Contains(p.opts.AdoptNamespaces, name) {
		return fmt.Sprintf("namespace %s exists; the import never adopts a namespace unless told (its Secrets would be readable by the organization's Owners): rename the organization in the source, or pass --adopt-namespace %s if it is this organization's own", name, name)
	}
	return ""
}

func (p *planner) projectRows(rows []sourceProject) {
	table := p.m.Projects.Table
	names := map[*Organization]map[string]bool{}
	for _, r := range rows {
		row := fmt.Sprintf("%s id=%s", table, r.ID)
		org, ok := p.orgs[r.Organization]
		if !ok {
			p.problem(row, "its organization %s=%s was not imported", p.m.Projects.Organization, r.Organization)
			continue
		}
		if names[org] == nil {
			names[org] = map[string]bool{}
		}
		name := slug(r.Name, 63)
		if name == "" {
			p.problem(row, "%s %q gives no usable name", p.m.Projects.Name, r.Name)
			continue
		}
		if names[org][name] {
			p.problem(row, "name %q is taken by another project of organization %s", name, org.Name)
			continue
		}
		if name != r.Name {
			p.note(row, "name %q becomes %q", r.Name, name)
		}
		names[org][name] = true
		display := r.DisplayName
		if len(display) > 200 {
			display = display[:200]
		}
		project := Project{SourceID: r.ID, RowID: rowID(p.m.Source, table, r.ID), Name: name, DisplayName: display}
		org.Projects = append(org.Projects, project)
		p.projects[r.ID] = struct {
			org *Organization
			p   Project
		}{org, project}
	}
}

func (p *planner) userRows(rows []sourceUser) {
	table := p.m.Users.Table
	byEmail := map[string][]sourceUser{}
	for _, u := range rows {
		email := db.NormalizeEmail(u.Email)
		byEmail[email] = append(byEmail[email], u)
	}
	for _, u := range rows {
		row := fmt.Sprintf("%s id=%s", table, u.ID)
		email := db.NormalizeEmail(u.Email)
		if same := byEmail[email]; len(same) > 1 {
			var others []string
			for _, o := range same {
				if o.ID != u.ID {
					others = append(others, fmt.Sprintf("id=%s (%s)", o.ID, o.Email))
				}
			}
			p.problem(row, "email %q is also the address of %s: Tenancy compares addresses without case, so it cannot tell them apart; merge the accounts in the source, then import again",
				u.Email, strings.Join(others, ", "))
			continue
		}
		if at := strings.IndexByte(email, '@'); at < 1 || at == len(email)-1 || strings.ContainsAny(email, " \t\r\n") || len(email) > 254 {
			p.problem(row, "email %q is not an address", u.Email)
			continue
		}
		user := &User{SourceID: u.ID, ID: rowID(p.m.Source, table, u.ID), Email: email, DisplayName: u.DisplayName,
			Verified: u.Verified, CreatedAt: u.CreatedAt}
		switch hash := u.PasswordHash; {
		case hash == "":
		case authd.IsBcryptHash(hash):
			if err := authd.CheckBcryptHash(hash); err != nil {
				p.problem(row, "password hash: %v; the user is imported without a password and sets one with a reset", err)
			} else {
				user.PasswordHash = hash
			}
		case strings.HasPrefix(hash, "$argon2id$"):
			if err := authd.CheckArgon2Hash(hash); err != nil {
				p.problem(row, "password hash: %v; the user is imported without a password and sets one with a reset", err)
			} else {
				user.PasswordHash = hash
			}
		default:
			p.problem(row, "password hash of an unknown scheme (%s…); the user is imported without a password and sets one with a reset",
				hashScheme(hash))
		}
		p.users[u.ID] = user
		p.plan.Users = append(p.plan.Users, *user)
	}
}

// hashScheme shows the beginning of a hash that names its scheme, and never the hash itself.
func hashScheme(hash string) string {
	if scheme := schemePrefix.FindString(hash); scheme != "" {
		return scheme
	}
	return "no $scheme$ prefix"
}

// schemePrefix is a modular crypt scheme name ($2b$, $argon2id$, $1$): short and of a few
// characters, so that a value that only starts with '$' shows none of itself.
var schemePrefix = regexp.MustCompile(`^\$[a-z0-9-]{1,12}\$`)

func (p *planner) membershipRows(orgRows, projectRows []sourceMembership) {
	type scope struct {
		org     *Organization
		project string
		user    string
	}
	seen := map[scope]string{}
	names := map[*Organization]map[string]bool{}
	add := func(row string, org *Organization, project string, m sourceMembership) {
		user, ok := p.users[m.User]
		if !ok {
			p.problem(row, "user %s is not among the imported users", m.User)
			return
		}
		role, err := p.m.role(m.Role)
		if err != nil {
			p.problem(row, "%v", err)
			return
		}
		key := scope{org, project, user.Email}
		if first, dup := seen[key]; dup {
			p.problem(row, "%s has a role in this scope already (%s); Tenancy keeps one role per person and scope", user.Email, first)
			return
		}
		seen[key] = row
		if names[org] == nil {
			names[org] = map[string]bool{}
		}
		base := slug(user.Email, 63)
		if project != "" {
			base = slug(project+"-"+user.Email, 63)
		}
		name := uniqueName(base, row, func(n string) bool { return names[org][n] })
		names[org][name] = true
		org.Memberships = append(org.Memberships, Membership{Name: name, Email: user.Email, Role: role, Project: project})
	}
	om, pm := p.m.OrganizationMemberships, p.m.ProjectMemberships
	for _, m := range orgRows {
		row := fmt.Sprintf("%s (%s=%s, %s=%s)", om.Table, om.Scope, m.Scope, om.User, m.User)
		org, ok := p.orgs[m.Scope]
		if !ok {
			p.problem(row, "its organization %s was not imported", m.Scope)
			continue
		}
		add(row, org, "", m)
	}
	for _, m := range projectRows {
		row := fmt.Sprintf("%s (%s=%s, %s=%s)", pm.Table, pm.Scope, m.Scope, pm.User, m.User)
		project, ok := p.projects[m.Scope]
		if !ok {
			p.problem(row, "its project %s was not imported", m.Scope)
			continue
		}
		add(row, project.org, project.p.Name, m)
	}
}

func (p *planner) apiKeyRows(rows []sourceAPIKey) {
	m := p.m.APIKeys
	names := map[*Organization]map[string]bool{}
	// Two old keys with one hash cannot be told apart at the token endpoint: neither is imported.
	byHash := map[string][]string{}
	for _, k := range rows {
		if hash, err := decodeKeyHash(k.Hash, m.HashEncoding); err == nil && k.RevokedAt == nil {
			byHash[string(hash)] = append(byHash[string(hash)], k.ID)
		}
	}
	for _, k := range rows {
		row := fmt.Sprintf("%s id=%s", m.Table, k.ID)
		if k.RevokedAt != nil {
			p.plan.Skipped["API keys revoked in the old system"]++
			continue
		}
		if k.ExpiresAt != nil && !k.ExpiresAt.After(p.opts.Now) {
			p.plan.Skipped["API keys expired in the old system"]++
			continue
		}
		org, ok := p.orgs[k.Organization]
		if !ok {
			p.problem(row, "its organization %s=%s was not imported", m.Organization, k.Organization)
			continue
		}
		key := APIKey{SourceID: k.ID}
		if k.Project != "" {
			project, ok := p.projects[k.Project]
			if !ok || project.org != org {
				p.problem(row, "its project %s=%s was not imported in organization %s", m.Project, k.Project, org.Name)
				continue
			}
			key.Project, key.ProjectRowID = project.p.Name, project.p.RowID
		}
		role, err := p.m.role(k.Role)
		if err != nil {
			p.problem(row, "%v", err)
			continue
		}
		if role == string(tenancyv1.RoleOwner) {
			p.note(row, "role Owner becomes Admin: API keys are never Owner in Tenancy")
			role = string(tenancyv1.RoleAdmin)
		}
		key.Role = role
		if names[org] == nil {
			names[org] = map[string]bool{}
		}
		base := slug(k.Name, 63)
		if base == "" {
			base = "key-" + slug(k.ID, 59)
		}
		key.Name = uniqueName(base, row, func(n string) bool { return names[org][n] })
		names[org][key.Name] = true
		if k.ExpiresAt != nil && k.ExpiresAt.Before(p.opts.Now.AddDate(1, 0, 0)) {
			expires := k.ExpiresAt.UTC().Truncate(time.Second)
			key.ExpiresAt = &expires
		}
		hash, err := decodeKeyHash(k.Hash, m.HashEncoding)
		switch same := byHash[string(hash)]; {
		case err == nil && len(same) > 1:
			var others []string
			for _, id := range same {
				if id != k.ID {
					others = append(others, "id="+id)
				}
			}
			p.problem(row, "the hash is also the hash of %s %s: neither old key can be told apart, so neither is imported; only the new APIKey %s/%s replaces it",
				m.Table, strings.Join(others, ", "), org.Name, key.Name)
		case k.Hash == "":
			p.problem(row, "no hash: the old key cannot be checked; only the new APIKey %s/%s replaces it", org.Name, key.Name)
		case err != nil:
			p.problem(row, "%v: the old key cannot be checked; only the new APIKey %s/%s replaces it", err, org.Name, key.Name)
		default:
			key.OldKeyID, key.OldKeyHash = importedKeyID(p.m.Source, k.ID), hash
			key.OldKeyExpires = p.opts.OldKeysUntil
			if k.ExpiresAt != nil && k.ExpiresAt.Before(key.OldKeyExpires) {
				key.OldKeyExpires = *k.ExpiresAt
			}
		}
		org.APIKeys = append(org.APIKeys, key)
	}
}

// decodeKeyHash reads an old key's hash: SHA-256 of the whole key, the only scheme that can be
// checked without the key's own salt or id.
func decodeKeyHash(s, encoding string) ([]byte, error) {
	var b []byte
	var err error
	switch encoding {
	case "hex", "bytea":
		b, err = hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), `\x`))
	case "base64":
		b, err = base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	}
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("the hash is not SHA-256 in %s (%s)", encoding, hashScheme(s))
	}
	return b, nil
}

func (p *planner) auditRows(rows []sourceAuditRow) {
	table := p.m.AuditLogs.Table
	for _, a := range rows {
		row := AuditRow{ImportID: p.m.Source + "/" + table + "/" + a.ID, At: a.At, Action: a.Action, Target: a.Target,
			Details: a.Details, Actor: p.m.Source + ":" + a.Actor}
		if a.Actor == "" {
			row.Actor = p.m.Source
		}
		if u, ok := p.users[a.Actor]; ok {
			row.Actor, row.ActorSourceID = u.Email, u.SourceID
		}
		if a.Organization != "" {
			org, ok := p.orgs[a.Organization]
			if !ok {
				p.problem(fmt.Sprintf("%s id=%s", table, a.ID), "its organization %s was not imported", a.Organization)
				continue
			}
			row.OrganizationID = org.RowID
		}
		if row.Action == "" {
			row.Action = "unknown"
		}
		row.Details["importID"] = row.ImportID
		row.Details["importedFrom"] = p.m.Source
		p.plan.AuditRows = append(p.plan.AuditRows, row)
	}
}

func (p *planner) tables(tables []sourceTable) {
	orgCol := p.m.DomainTables.OrganizationColumn
	tenantTables := map[string]bool{}
	for _, t := range tables {
		if !scriptSafe(t.Name) {
			p.problem(fmt.Sprintf("table %q", t.Name), "the name has characters the import does not write into SQL (not printable, '$' or '\\'); rename the table")
			continue
		}
		name := slug(strings.ReplaceAll(t.Name, "_", "-"), 63)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 || name == "" {
			name = "table-" + slug(fmt.Sprintf("%x", sha256.Sum256([]byte(t.Name))), 8)
		}
		// Two tables whose names differ only in case or '_' and '-', or a TenantTable of another
		// table in the cluster, must not share a TenantTable: one of the tables would get no policy.
		name = uniqueName(name, t.Name, func(n string) bool {
			if c := p.opts.Cluster; c != nil {
				if other, ok := c.TenantTables[n]; ok && other != p.m.Schema+"."+t.Name {
					return true
				}
			}
			return tenantTables[n]
		})
		tenantTables[name] = true
		proposal := TableProposal{Table: t.Name, TenantTable: name, ProjectColumn: t.ProjectColumn}
		switch {
		case t.OrganizationColumn != "":
			proposal.OrganizationColumn = t.OrganizationColumn
		case t.WrongType != "":
			proposal.Warnings = append(proposal.Warnings, fmt.Sprintf(
				"column %s is %s, not uuid: convert it to the organizations' uuids (tenancy.organizations.id) before a TenantTable can use it", orgCol, t.WrongType))
		default:
			proposal.OrganizationColumn = orgCol
			proposal.MissingColumnSQL = missingColumnSQL(p.m.Schema, t, orgCol, name)
		}
		for _, policy := range t.Policies {
			proposal.Warnings = append(proposal.Warnings, fmt.Sprintf(
				"policy %s of the old system: permissive policies OR together, so drop it once the TenantTable is Ready", policy))
		}
		p.plan.Tables = append(p.plan.Tables, proposal)
	}
}

// scriptSafe reports whether a name may go into the psql script the import writes: only
// printable characters, and neither '$' (which could end a dollar-quoted body) nor '\' (a psql
// meta-command). Quoting does the rest.
func scriptSafe(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '$' || r == '\\' {
			return false
		}
	}
	return s != ""
}

// quotas reports organizations whose tier would refuse what the import writes into them.
func (p *planner) quotas() {
	for _, org := range p.plan.Organizations {
		limits := tenancyv1.Tier(org.Tier).Limits()
		people := map[string]bool{}
		for _, m := range org.Memberships {
			people[m.Email] = true
		}
		row := fmt.Sprintf("%s id=%s", p.m.Organizations.Table, org.SourceID)
		for _, q := range []struct {
			what  string
			count int
			limit int
		}{{"projects", len(org.Projects), limits.Projects}, {"members", len(people), limits.Members}, {"API keys", len(org.APIKeys), limits.APIKeys}} {
			if q.limit > 0 && q.count > q.limit {
				p.problem(row, "tier %s allows %d %s and the organization has %d: the webhook refuses the rest; map its tier higher (organizations.tiers)",
					org.Tier, q.limit, q.what, q.count)
			}
		}
	}
}
