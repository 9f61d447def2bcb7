package importer_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	. "github.com/onsi/gomega"
	"golang.org/x/crypto/bcrypt"
)

// The hand-built schema a team brings: organizations with a subscription tier, projects, users
// with bcrypt hashes, memberships of both kinds with lower-case role names, hashed API keys, an
// audit log, and two application tables, one with organization_id and an old RLS policy, one
// without. Plus the rows a real export has that cannot be taken as they are.
const legacySchema = `
CREATE SCHEMA legacy;
CREATE TABLE legacy.organizations (id uuid PRIMARY KEY, slug text NOT NULL, name text NOT NULL,
    subscription_tier text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE legacy.projects (id uuid PRIMARY KEY, organization_id uuid NOT NULL REFERENCES legacy.organizations,
    slug text NOT NULL, name text NOT NULL);
CREATE TABLE legacy.users (id uuid PRIMARY KEY, email text NOT NULL, full_name text NOT NULL DEFAULT '',
    password_hash text, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE legacy.organization_memberships (organization_id uuid NOT NULL, user_id uuid NOT NULL, role text NOT NULL);
CREATE TABLE legacy.project_memberships (project_id uuid NOT NULL, user_id uuid NOT NULL, role text NOT NULL);
CREATE TABLE legacy.api_keys (id bigint PRIMARY KEY, organization_id uuid NOT NULL, project_id uuid, name text NOT NULL,
    key_hash text NOT NULL, role text NOT NULL, expires_at timestamptz, revoked_at timestamptz);
CREATE TABLE legacy.audit_logs (id bigint PRIMARY KEY, organization_id uuid, actor_id uuid, action text NOT NULL,
    target text NOT NULL DEFAULT '', metadata jsonb, created_at timestamptz NOT NULL);
CREATE TABLE legacy.agents (id uuid PRIMARY KEY, organization_id uuid NOT NULL REFERENCES legacy.organizations, name text NOT NULL);
CREATE INDEX agents_organization_id_idx ON legacy.agents (organization_id);
CREATE TABLE legacy.agent_runs (id bigint PRIMARY KEY, agent_id uuid NOT NULL REFERENCES legacy.agents, output text NOT NULL);
ALTER TABLE legacy.agents ENABLE ROW LEVEL SECURITY;
CREATE POLICY legacy_org_isolation ON legacy.agents
    USING (organization_id = nullif(current_setting('app.current_org', true), '')::uuid);
GRANT USAGE ON SCHEMA legacy TO tenancy_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON legacy.agents, legacy.agent_runs TO tenancy_app;
`

const (
	organizationCount = 20
	usersPerOrg       = 10
	// agentsPerOrg rows in legacy.agents and runsPerAgent in legacy.agent_runs for each.
	agentsPerOrg = 2
	runsPerAgent = 3
)

type fixtureOrg struct {
	id, slug, name, tier string
	projects             [2]string // ids
	projectSlugs         [2]string
}

type fixtureUser struct {
	id, email, password string
	org                 int    // index into orgs
	role                string // Tenancy's name
}

type fixtureKey struct {
	id        int64
	org       int
	project   string // project slug, "" for the whole organization
	name      string
	plaintext string
	role      string // Tenancy's name
}

// fixture is what the test wrote into the legacy schema, to check the import against.
type fixture struct {
	orgs             []fixtureOrg
	users            []fixtureUser
	projectRoles     map[string]string // "<email> <org slug>/<project slug>" → Tenancy role
	keys             []fixtureKey      // importable old keys
	revokedKey       string            // plaintext of a revoked old key
	bcryptKeyID      int64             // a key whose hash cannot be checked
	auditRows        int
	auditSample      time.Time // created_at of legacy.audit_logs id 1
	dupIDs           [2]string // the two users whose addresses differ only in case
	ghostID          string    // a user id that no user has
	superuserProject string    // the project of the membership with an unknown role
}

// The mapping a team writes for this schema: the defaults name the tables of the schema public,
// this one is called legacy, and one tier has a name of its own.
const fixtureMapping = `
source: acme-legacy
schema: legacy
organizations:
  tiers:
    platinum: Enterprise
`

// oldRoles are how the old system spells the roles: lower case, and in one place upper case.
var oldRoles = map[string]string{"Owner": "owner", "Admin": "ADMIN", "Member": "member", "Viewer": "viewer"}

// writeFixture creates the legacy schema in conn's database and fills it.
func writeFixture(ctx context.Context, conn *pgx.Conn) *fixture {
	_, err := conn.Exec(ctx, legacySchema)
	Expect(err).NotTo(HaveOccurred())
	f := &fixture{projectRoles: map[string]string{}}
	batch := &pgx.Batch{}
	tiers := []string{"free", "Pro", "enterprise", "platinum"}
	for i := range organizationCount {
		o := fixtureOrg{id: uuid.NewString(), slug: fmt.Sprintf("org-%02d", i+1), name: fmt.Sprintf("Organization %d", i+1), tier: tiers[i%len(tiers)]}
		if i == 1 {
			o.slug, o.name = "Globex_Corp", "Globex Corporation" // becomes globex-corp
		}
		batch.Queue(`INSERT INTO legacy.organizations (id, slug, name, subscription_tier, created_at) VALUES ($1, $2, $3, $4, $5)`,
			o.id, o.slug, o.name, o.tier, time.Date(2023, 1, 1+i, 0, 0, 0, 0, time.UTC))
		for p := range o.projects {
			o.projects[p], o.projectSlugs[p] = uuid.NewString(), fmt.Sprintf("project-%d", p+1)
			batch.Queue(`INSERT INTO legacy.projects VALUES ($1, $2, $3, $4)`, o.projects[p], o.id, o.projectSlugs[p], fmt.Sprintf("Project %d", p+1))
		}
		f.orgs = append(f.orgs, o)
	}
	roles := []string{"Owner", "Admin", "Admin", "Member", "Member", "Member", "Member", "Member", "Viewer", "Viewer"}
	for i := range organizationCount * usersPerOrg {
		org, idx := i/usersPerOrg, i%usersPerOrg
		u := fixtureUser{id: uuid.NewString(), email: fmt.Sprintf("Person%03d@Org%02d.example", i, org+1),
			password: fmt.Sprintf("old password %03d", i), org: org, role: roles[idx]}
		hash, err := bcrypt.GenerateFromPassword([]byte(u.password), bcrypt.MinCost)
		Expect(err).NotTo(HaveOccurred())
		// PHP writes $2y$; the same hash.
		encoded := string(hash)
		if i%3 == 0 {
			encoded = "$2y$" + encoded[4:]
		}
		batch.Queue(`INSERT INTO legacy.users VALUES ($1, $2, $3, $4, $5)`, u.id, u.email, fmt.Sprintf("Person %d", i), encoded,
			time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC))
		role := oldRoles[u.role]
		if idx == 1 {
			role = "admin"
		}
		batch.Queue(`INSERT INTO legacy.organization_memberships VALUES ($1, $2, $3)`, f.orgs[org].id, u.id, role)
		o := f.orgs[org]
		switch idx {
		case 3: // a Member who is Admin of a project
			batch.Queue(`INSERT INTO legacy.project_memberships VALUES ($1, $2, 'admin')`, o.projects[0], u.id)
			f.projectRoles[strings.ToLower(u.email)+" "+o.projectSlugs[0]] = "Admin"
		case 9: // a Viewer who is Member of a project
			batch.Queue(`INSERT INTO legacy.project_memberships VALUES ($1, $2, 'member')`, o.projects[1], u.id)
			f.projectRoles[strings.ToLower(u.email)+" "+o.projectSlugs[1]] = "Member"
		}
		f.users = append(f.users, u)
	}

	// Old API keys: SHA-256 of the whole key in hex, as most homegrown schemes store them.
	keyID := int64(0)
	addKey := func(org int, project, name, oldRole, role string, revoked bool) fixtureKey {
		keyID++
		k := fixtureKey{id: keyID, org: org, name: name, role: role, plaintext: "sk_live_" + strings.ReplaceAll(uuid.NewString(), "-", "")}
		sum := sha256.Sum256([]byte(k.plaintext))
		var projectID any
		if project != "" {
			k.project, projectID = f.orgs[org].projectSlugs[0], f.orgs[org].projects[0]
		}
		var revokedAt any
		if revoked {
			revokedAt = time.Now().Add(-time.Hour)
		}
		batch.Queue(`INSERT INTO legacy.api_keys VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, k.id, f.orgs[org].id, projectID, name,
			hex.EncodeToString(sum[:]), oldRole, time.Now().AddDate(0, 6, 0), revokedAt)
		return k
	}
	for org := range organizationCount {
		f.keys = append(f.keys, addKey(org, "", "CI deploy", "member", "Member", false))
		f.keys = append(f.keys, addKey(org, "project", "Reporting (read only)", "viewer", "Viewer", false))
	}
	f.keys = append(f.keys, addKey(2, "", "Root key", "owner", "Admin", false)) // never Owner in Tenancy
	f.revokedKey = addKey(0, "", "Old laptop", "admin", "Admin", true).plaintext
	keyID++
	f.bcryptKeyID = keyID
	batch.Queue(`INSERT INTO legacy.api_keys VALUES ($1, $2, NULL, 'Salted key', '$2b$10$abcdefghijklmnopqrstuuJ7yJq5bqg0Xg4mYQ2rCz2f7Hk9d3yW6', 'admin', NULL, NULL)`,
		keyID, f.orgs[1].id)

	// The audit log: five rows per organization, one of the platform, actors by user id.
	f.auditSample = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	auditID := int64(0)
	for org := range organizationCount {
		for n := range 5 {
			auditID++
			actor := f.users[org*usersPerOrg+n].id
			batch.Queue(`INSERT INTO legacy.audit_logs VALUES ($1, $2, $3, $4, $5, $6, $7)`, auditID, f.orgs[org].id, actor,
				"project.updated", "project/"+f.orgs[org].projectSlugs[0], fmt.Sprintf(`{"n": %d}`, n),
				f.auditSample.Add(time.Duration(auditID)*time.Minute-time.Minute))
		}
	}
	auditID++
	batch.Queue(`INSERT INTO legacy.audit_logs VALUES ($1, NULL, NULL, 'maintenance.started', '', NULL, $2)`, auditID, f.auditSample)
	f.auditRows = int(auditID)

	// What cannot be taken as it is.
	f.dupIDs = [2]string{uuid.NewString(), uuid.NewString()}
	batch.Queue(`INSERT INTO legacy.users (id, email, password_hash) VALUES ($1, 'Dup@Case.example', NULL), ($2, 'dup@case.example', NULL)`,
		f.dupIDs[0], f.dupIDs[1])
	batch.Queue(`INSERT INTO legacy.organization_memberships VALUES ($1, $2, 'member')`, f.orgs[4].id, f.dupIDs[0])
	f.ghostID = uuid.NewString()
	batch.Queue(`INSERT INTO legacy.organization_memberships VALUES ($1, $2, 'member')`, f.orgs[5].id, f.ghostID)
	f.superuserProject = f.orgs[6].projects[1]
	batch.Queue(`INSERT INTO legacy.project_memberships VALUES ($1, $2, 'superuser')`, f.superuserProject, f.users[6*usersPerOrg+2].id)

	// The application's rows.
	runID := int64(0)
	for org := range organizationCount {
		for a := range agentsPerOrg {
			agent := uuid.NewString()
			batch.Queue(`INSERT INTO legacy.agents VALUES ($1, $2, $3)`, agent, f.orgs[org].id, fmt.Sprintf("agent %d of %s", a, f.orgs[org].slug))
			for range runsPerAgent {
				runID++
				batch.Queue(`INSERT INTO legacy.agent_runs VALUES ($1, $2, $3)`, runID, agent, "output of "+f.orgs[org].slug)
			}
		}
	}
	Expect(conn.SendBatch(ctx, batch).Close()).To(Succeed())
	return f
}

// tenancyName is the Organization an old organization becomes.
func (o fixtureOrg) tenancyName() string {
	if o.slug == "Globex_Corp" {
		return "globex-corp"
	}
	return o.slug
}
