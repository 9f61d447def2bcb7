package importer

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
)

func TestLoadMapping(t *testing.T) {
	for _, tc := range []struct {
		name, file, wantErr string
	}{
		{"the defaults", "", ""},
		{"only what differs", "schema: legacy\nroles: {billing: Admin}\n", ""},
		{"a misspelt key is refused, not ignored", "organisations: {table: orgs}\n", `unknown field "organisations"`},
		{"a role that Tenancy has not", "roles: {billing: Superuser}\n", `roles[billing]: Unsupported value: "Superuser"`},
		{"a tier that Tenancy has not", "organizations: {tiers: {gold: Platinum}}\n", `organizations.tiers[gold]: Unsupported value: "Platinum"`},
		{"a hash encoding it cannot read", "apiKeys: {hashEncoding: base32}\n", `apiKeys.hashEncoding: Unsupported value: "base32"`},
		{"the users' email column is needed", "users: {email: ''}\n", "users.email: Required value"},
		{"the source keys ids, so it is a plain name", "source: 'Legacy System'\n", `source: Invalid value: "Legacy System"`},
		{"project memberships need projects", "projects: {table: ''}\n", "projects.table: Required value: project memberships need the projects table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = filepath.Join(t.TempDir(), "mapping.yaml")
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadMapping(path)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("LoadMapping: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("LoadMapping: %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestPlan checks each rule the plan applies to a row, on rows in memory.
func TestPlan(t *testing.T) {
	bcryptHash, err := bcrypt.GenerateFromPassword([]byte("old password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	past, soon := now.Add(-time.Hour), now.AddDate(0, 1, 0)
	data := &sourceData{
		Organizations: []sourceOrganization{
			{ID: "1", Name: "Acme_Corp", DisplayName: "Acme", Tier: "PRO"},
			{ID: "2", Name: "acme-corp", Tier: "pro"},                                    // the same name once lower-cased
			{ID: "3", Name: "kube-system", Tier: "free"},                                 // reserved
			{ID: "4", Name: "gold", Tier: "gold"},                                        // unknown tier
			{ID: "5a0e9d43-9c2b-4a70-8f0e-5b3c1f2d4e6a", Name: "keeps-its-id", Tier: ""}, // a UUID id is kept
		},
		Projects: []sourceProject{{ID: "10", Organization: "1", Name: "Web App"}, {ID: "11", Organization: "3", Name: "x"}},
		Users: []sourceUser{
			{ID: "100", Email: " Ann@Example.com ", PasswordHash: string(bcryptHash), Verified: true},
			{ID: "101", Email: "Bob@example.com"},
			{ID: "102", Email: "bob@EXAMPLE.com"},
			{ID: "103", Email: "not-an-address"},
			{ID: "104", Email: "md5@example.com", PasswordHash: "$1$salt$hash"},
		},
		OrganizationMemberships: []sourceMembership{
			{Scope: "1", User: "100", Role: "OWNER"},
			{Scope: "1", User: "101", Role: "member"}, // a user left out
			{Scope: "1", User: "100", Role: "admin"},  // a second role in the same scope
			{Scope: "1", User: "104", Role: "billing"},
		},
		ProjectMemberships: []sourceMembership{{Scope: "10", User: "100", Role: "viewer"}},
		APIKeys: []sourceAPIKey{
			{ID: "20", Organization: "1", Name: "CI", Role: "owner", Hash: sha256Hex("sk_1"), ExpiresAt: &soon},
			{ID: "21", Organization: "1", Name: "ci", Role: "member", Hash: "$2b$10$salted"},
			{ID: "22", Organization: "1", Name: "Gone", Role: "member", Hash: sha256Hex("sk_2"), RevokedAt: &past},
			{ID: "23", Organization: "1", Name: "Old", Role: "member", Hash: sha256Hex("sk_3"), ExpiresAt: &past},
			{ID: "24", Organization: "1", Project: "10", Name: "", Role: "viewer", Hash: strings.ToUpper(sha256Hex("sk_4"))},
		},
		AuditRows: []sourceAuditRow{{ID: "30", Organization: "1", Actor: "100", Action: "x", Details: map[string]any{}, At: past},
			{ID: "31", Organization: "", Actor: "999", Action: "y", Details: map[string]any{}, At: past}},
		Tables: []sourceTable{{Name: "orders", OrganizationColumn: "organization_id", Policies: []string{"old_policy"}},
			{Name: "events", WrongType: "int8"}, {Name: "lines", Parent: &foreignKey{Column: "order_id", ParentTable: "orders", ParentColumn: "id"}}},
	}
	mapping := DefaultMapping()
	mapping.Roles = map[string]string{}
	opts := Options{OldKeysUntil: now.AddDate(0, 3, 0), Now: now, OperatorNamespace: "tenancy-system"}
	plan := newPlan(data, mapping, opts)

	var problems []string
	for _, p := range plan.Problems {
		problems = append(problems, p.String())
	}
	wantProblems := []string{
		`organizations id=2: name "acme-corp" is taken by organizations id=1 already; names must be unique once lower-cased`,
		`organizations id=3: name "kube-system" is a namespace Kubernetes or Tenancy reserves; rename the organization in the source`,
		`organizations id=4: unknown tier "gold" (map it under organizations.tiers: in the mapping file to one of Free, Pro, Enterprise)`,
		`projects id=11: its organization organization_id=3 was not imported`,
		`users id=101: email "Bob@example.com" is also the address of id=102 (bob@EXAMPLE.com): Tenancy compares addresses without case, so it cannot tell them apart; merge the accounts in the source, then import again`,
		`users id=102: email "bob@EXAMPLE.com" is also the address of id=101 (Bob@example.com): Tenancy compares addresses without case, so it cannot tell them apart; merge the accounts in the source, then import again`,
		`users id=103: email "not-an-address" is not an address`,
		`users id=104: password hash of an unknown scheme ($1$…); the user is imported without a password and sets one with a reset`,
		`organization_memberships (organization_id=1, user_id=101): user 101 is not among the imported users`,
		`organization_memberships (organization_id=1, user_id=100): ann@example.com has a role in this scope already (organization_memberships (organization_id=1, user_id=100)); Tenancy keeps one role per person and scope`,
		`organization_memberships (organization_id=1, user_id=104): unknown role "billing" (map it under roles: in the mapping file to one of Owner, Admin, Member, Viewer)`,
		`api_keys id=21: the hash is not SHA-256 in hex ($2b$): the old key cannot be checked; only the new APIKey acme-corp/ci-5aa9a7 replaces it`,
	}
	if diff := cmp.Diff(wantProblems, problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}

	if len(plan.Organizations) != 2 {
		t.Fatalf("organizations: %d, want acme-corp and keeps-its-id", len(plan.Organizations))
	}
	acme, kept := plan.Organizations[0], plan.Organizations[1]
	if acme.Name != "acme-corp" || acme.Tier != "Pro" || kept.Tier != "Free" {
		t.Errorf("acme: %+v, kept: %+v", acme, kept)
	}
	if kept.RowID != "5a0e9d43-9c2b-4a70-8f0e-5b3c1f2d4e6a" {
		t.Errorf("a UUID id is kept: %s", kept.RowID)
	}
	if acme.RowID != rowID("legacy", "organizations", "1") || acme.RowID == rowID("other", "organizations", "1") {
		t.Errorf("an integer id gives a UUID of the source and the id: %s", acme.RowID)
	}

	wantMembers := []Membership{
		{Name: "ann-example-com", Email: "ann@example.com", Role: "Owner"},
		{Name: "web-app-ann-example-com", Email: "ann@example.com", Role: "Viewer", Project: "web-app"},
	}
	if diff := cmp.Diff(wantMembers, acme.Memberships); diff != "" {
		t.Errorf("memberships (-want +got):\n%s", diff)
	}

	if len(acme.APIKeys) != 3 {
		t.Fatalf("API keys: %+v, want CI, ci and the project's key (revoked and expired left out)", acme.APIKeys)
	}
	ci, salted, project := acme.APIKeys[0], acme.APIKeys[1], acme.APIKeys[2]
	if ci.Role != "Admin" || ci.OldKeyID == "" || !ci.OldKeyExpires.Equal(soon) || ci.ExpiresAt == nil {
		t.Errorf("an Owner key becomes Admin and keeps its earlier expiry: %+v", ci)
	}
	if salted.OldKeyID != "" || salted.Name == ci.Name {
		t.Errorf("a salted key gets only a new APIKey, under a name of its own: %+v", salted)
	}
	if project.Name != "key-24" || project.Project != "web-app" || !project.OldKeyExpires.Equal(opts.OldKeysUntil) {
		t.Errorf("a key without a name, of a project, with an upper-case hex hash: %+v", project)
	}
	if want := map[string]int{"API keys revoked in the old system": 1, "API keys expired in the old system": 1}; !cmp.Equal(want, plan.Skipped) {
		t.Errorf("skipped: %v, want %v", plan.Skipped, want)
	}
	if ci.OldKeyID != importedKeyID("legacy", "20") || !strings.HasPrefix(ci.OldKeyID, "imp_") || len(ci.OldKeyID) != 16 {
		t.Errorf("old key id: %s", ci.OldKeyID)
	}

	if len(plan.Users) != 2 || plan.Users[0].PasswordHash != string(bcryptHash) || plan.Users[1].PasswordHash != "" {
		t.Errorf("users: %+v", plan.Users)
	}
	if len(plan.AuditRows) != 2 || plan.AuditRows[0].Actor != "ann@example.com" || plan.AuditRows[1].Actor != "legacy:999" ||
		plan.AuditRows[0].Details["importID"] != "legacy/audit_logs/30" || plan.AuditRows[1].OrganizationID != "" {
		t.Errorf("audit rows: %+v", plan.AuditRows)
	}

	tables := map[string]TableProposal{}
	for _, p := range plan.Tables {
		tables[p.Table] = p
	}
	if p := tables["orders"]; p.OrganizationColumn != "organization_id" || p.MissingColumnSQL != "" || len(p.Warnings) != 1 {
		t.Errorf("orders: %+v", p)
	}
	if p := tables["events"]; p.OrganizationColumn != "" || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "is int8, not uuid") {
		t.Errorf("events: %+v", p)
	}
	if p := tables["lines"]; !strings.Contains(p.MissingColumnSQL, `UPDATE "public"."lines" c SET "organization_id" = p."organization_id" FROM "public"."orders" p`) {
		t.Errorf("lines: %s", p.MissingColumnSQL)
	}

	if again := newPlan(data, mapping, opts); !cmp.Equal(plan, again, cmp.AllowUnexported(Plan{})) {
		t.Error("the same source gives another plan")
	}
}

// TestPlanQuotas: an organization that its tier would not hold is reported.
func TestPlanQuotas(t *testing.T) {
	data := &sourceData{Organizations: []sourceOrganization{{ID: "1", Name: "small", Tier: "free"}}}
	for i := range 4 {
		data.Projects = append(data.Projects, sourceProject{ID: string(rune('a' + i)), Organization: "1", Name: "p" + string(rune('a'+i))})
	}
	plan := newPlan(data, DefaultMapping(), Options{Now: time.Now()})
	if len(plan.Problems) != 1 || plan.Problems[0].String() != "organizations id=1: tier Free allows 3 projects and the organization has 4: the webhook refuses the rest; map its tier higher (organizations.tiers)" {
		t.Fatalf("problems: %v", plan.Problems)
	}
}

// TestMissingColumnSQL: names from the source are quoted wherever they appear.
func TestMissingColumnSQL(t *testing.T) {
	sql := missingColumnSQL(`app"; DROP TABLE x; --`, sourceTable{Name: `Weird "Name"`,
		Parent: &foreignKey{Column: "parent id", ParentTable: "Parent", ParentColumn: "id"}}, "organization_id", "weird-name")
	for _, want := range []string{
		`ALTER TABLE "app""; DROP TABLE x; --"."Weird ""Name""" ADD COLUMN IF NOT EXISTS "organization_id" uuid;`,
		`FROM "app""; DROP TABLE x; --"."Parent" p WHERE p."id" = NEW."parent id";`,
		`CREATE INDEX CONCURRENTLY IF NOT EXISTS "Weird ""Name""_organization_id_idx"`,
		"\\set ON_ERROR_STOP on\nSET lock_timeout = '5s';",
		`RAISE EXCEPTION 'rows of %.% have no %: assign or delete them, then run this again', 'app"; DROP TABLE x; --', 'Weird "Name"', 'organization_id';`,
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("the SQL lacks %s:\n%s", want, sql)
		}
	}
	if long := identifier(strings.Repeat("t", 80), "organization_id", "fill"); len(long) > 63 {
		t.Errorf("identifier is %d bytes, want at most PostgreSQL's 63", len(long))
	}
	a, b := identifier(strings.Repeat("t", 60)+"a", "organization_id", "fill"), identifier(strings.Repeat("t", 60)+"b", "organization_id", "fill")
	if a == b {
		t.Errorf("two long names collide: %s", a)
	}
	if cyrillic := identifier(strings.Repeat("таблица", 6), "organization_id", "idx"); !utf8.ValidString(cyrillic) || len(cyrillic) > 63 {
		t.Errorf("a cut name is not valid UTF-8 within 63 bytes: %q", cyrillic)
	}
}

// TestPlanRefusesWhatIsNotItsToTake: an Organization or namespace that exists in the cluster, two
// old keys with one hash, a table name that is not printable, an argon2id hash that asks for too
// much.
func TestPlanRefusesWhatIsNotItsToTake(t *testing.T) {
	data := &sourceData{
		Organizations: []sourceOrganization{{ID: "1", Name: "monitoring"}, {ID: "2", Name: "taken"}, {ID: "3", Name: "ours"},
			{ID: "4", Name: "adopted"}},
		Users: []sourceUser{{ID: "10", Email: "a@example.com", PasswordHash: "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}},
		APIKeys: []sourceAPIKey{{ID: "20", Organization: "3", Name: "a", Role: "member", Hash: sha256Hex("same")},
			{ID: "21", Organization: "3", Name: "b", Role: "member", Hash: sha256Hex("same")}},
		Tables: []sourceTable{{Name: "evil\nDROP TABLE x; --", OrganizationColumn: "organization_id"},
			{Name: "a$left$ \\! id #", OrganizationColumn: "organization_id"},
			{Name: "user_notes", OrganizationColumn: "organization_id"}, {Name: "user-notes", OrganizationColumn: "organization_id"},
			{Name: "orders", OrganizationColumn: "organization_id"}, {Name: "agents", OrganizationColumn: "organization_id"}},
	}
	m := DefaultMapping()
	cluster := &ClusterState{
		Namespaces: map[string]bool{"monitoring": true, "taken": true, "ours": true, "adopted": true},
		Organizations: map[string]ImportedObject{
			"taken": {Source: "someone-else", RowID: rowID(m.Source, "organizations", "2")},
			"ours":  {Source: m.Source, RowID: rowID(m.Source, "organizations", "3")},
		},
		TenantTables: map[string]string{"orders": "billing.orders", "agents": "public.agents"},
	}
	plan := newPlan(data, m, Options{Now: time.Now(), OldKeysUntil: time.Now().AddDate(0, 1, 0), Cluster: cluster, AdoptNamespaces: []string{"adopted"}})
	var problems []string
	for _, p := range plan.Problems {
		problems = append(problems, p.String())
	}
	want := []string{
		"organizations id=1: namespace monitoring exists; the import never adopts a namespace unless told (its Secrets would be readable by the organization's Owners): rename the organization in the source, or pass --adopt-namespace monitoring if it is this organization's own",
		"organizations id=2: an Organization taken exists already that this import did not make; rename the organization in the source",
		"users id=10: password hash: argon2id memory 4194304 KiB is outside 8 KiB per lane to 131072 KiB; the user is imported without a password and sets one with a reset",
		"api_keys id=20: the hash is also the hash of api_keys id=21: neither old key can be told apart, so neither is imported; only the new APIKey ours/a replaces it",
		"api_keys id=21: the hash is also the hash of api_keys id=20: neither old key can be told apart, so neither is imported; only the new APIKey ours/b replaces it",
		`table "evil\nDROP TABLE x; --": the name has characters the import does not write into SQL (not printable, '$' or '\'); rename the table`,
		`table "a$left$ \\! id #": the name has characters the import does not write into SQL (not printable, '$' or '\'); rename the table`,
	}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	var names []string
	for _, o := range plan.Organizations {
		names = append(names, o.Name)
	}
	if diff := cmp.Diff([]string{"ours", "adopted"}, names); diff != "" {
		t.Errorf("organizations: an earlier run's and the one named in --adopt-namespace (-want +got):\n%s", diff)
	}
	for _, k := range plan.Organizations[0].APIKeys {
		if k.OldKeyID != "" {
			t.Errorf("an old key whose hash another has is imported: %+v", k)
		}
	}
	// Each table gets a TenantTable of its own: not one of another table in the cluster (orders
	// is billing's), not one another table of the import gets; agents' own exists already.
	tenantTables := map[string]string{}
	for _, t := range plan.Tables {
		tenantTables[t.Table] = t.TenantTable
	}
	want2 := map[string]string{"user_notes": "user-notes", "user-notes": "user-notes-" + suffixOf("user-notes"),
		"orders": "orders-" + suffixOf("orders"), "agents": "agents"}
	if diff := cmp.Diff(want2, tenantTables); diff != "" {
		t.Errorf("TenantTables (-want +got):\n%s", diff)
	}
}

func suffixOf(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return hex.EncodeToString(sum[:])[:6]
}
