package db_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// errRollback ends a probe's transaction without keeping what it did.
var errRollback = errors.New("rollback")

// viaSDK runs fn as an application does: the SDK's WithTenant sets the request context (and the
// project narrowing) for the transaction, and fn runs as tenancy_app.
func viaSDK(ctx context.Context, pool *pgxpool.Pool, tctxValue, project string, fn func(tx pgx.Tx) error) error {
	ctx = tenancy.WithPrincipal(ctx, &tenancy.Principal{Claims: &tenancy.Claims{TCtx: tctxValue}, Project: project})
	return tenancy.WithTenant(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE tenancy_app"); err != nil {
			return err
		}
		return fn(tx)
	})
}

// The isolation proof: a project-scoped TenantTable, probed as tenancy_app (no BYPASSRLS) through
// the SDK's pgx helper with signed request contexts, for every principal × command × target scope.
var _ = Describe("Isolation through TenantTable policies", Ordered, func() {
	var (
		pg     *db.Postgres
		f      identityFixture
		otherA string // a second project of organization A
		users  map[string]string
	)
	table := db.TenantTable{
		Name: "docs", Schema: "public", Table: "docs", OrganizationColumn: "org_id", ProjectColumn: "project_id",
		Access: map[string]string{"SELECT": "Viewer", "INSERT": "Member", "UPDATE": "Member", "DELETE": "Admin"},
	}

	BeforeAll(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "isolation")
		f = seedIdentities(ctx, pg)
		r, err := pg.UpsertProject(ctx, db.Project{UID: newUID(), OrganizationID: f.orgA, Name: "api"}, db.Actor{Name: "test"})
		Expect(err).NotTo(HaveOccurred())
		otherA = r.ID
		users = map[string]string{"Admin": f.admin, "project Viewer": f.projViewer}
		for _, role := range []string{"Owner", "Member", "Viewer"} {
			var id string
			Expect(pg.Pool().QueryRow(ctx, `
				WITH u AS (INSERT INTO tenancy.users (email) VALUES ($1) RETURNING id)
				INSERT INTO tenancy.memberships (uid, organization_id, user_id, role, state)
				SELECT gen_random_uuid(), $2, id, $3, 'Active' FROM u RETURNING user_id`,
				"org-"+strings.ToLower(role)+"@acme.test", f.orgA, role).Scan(&id)).To(Succeed())
			users[role] = id
		}
		_, err = pg.Pool().Exec(ctx, `
			CREATE TABLE public.docs (id serial PRIMARY KEY, org_id uuid NOT NULL, project_id uuid NOT NULL, body text NOT NULL);
			CREATE INDEX ON public.docs (org_id, project_id);
			GRANT SELECT, INSERT, UPDATE, DELETE ON public.docs TO tenancy_app;
			GRANT USAGE ON SEQUENCE public.docs_id_seq TO tenancy_app`)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.Pool().Exec(ctx, "INSERT INTO public.docs (org_id, project_id, body) VALUES ($1, $2, 'a'), ($1, $3, 'a2'), ($4, $5, 'b')",
			f.orgA, f.projectA, otherA, f.orgB, f.projectB)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.EnsurePolicies(ctx, table)
		Expect(err).NotTo(HaveOccurred())
	})

	type target struct{ name, org, project string }
	targets := func() []target {
		return []target{{"its project", f.orgA, f.projectA}, {"another project", f.orgA, otherA}, {"another organization", f.orgB, f.projectB}}
	}

	// probe runs command against the target scope in tctxValue's context and reports whether
	// the database let it through; the transaction is rolled back.
	probe := func(ctx context.Context, pool *pgxpool.Pool, tctxValue, command string, t target) bool {
		GinkgoHelper()
		allowed := false
		err := viaSDK(ctx, pool, tctxValue, "", func(tx pgx.Tx) error {
			switch command {
			case "SELECT":
				var n int
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM public.docs WHERE org_id = $1 AND project_id = $2", t.org, t.project).Scan(&n); err != nil {
					return err
				}
				allowed = n > 0
			case "INSERT":
				_, err := tx.Exec(ctx, "INSERT INTO public.docs (org_id, project_id, body) VALUES ($1, $2, 'new')", t.org, t.project)
				if err != nil && !isRLSViolation(err) {
					return err
				}
				allowed = err == nil
			default:
				sql := "UPDATE public.docs SET body = 'changed' WHERE org_id = $1 AND project_id = $2"
				if command == "DELETE" {
					sql = "DELETE FROM public.docs WHERE org_id = $1 AND project_id = $2"
				}
				tag, err := tx.Exec(ctx, sql, t.org, t.project)
				if err != nil {
					return err
				}
				allowed = tag.RowsAffected() > 0
			}
			return errRollback
		})
		Expect(err).To(MatchError(errRollback))
		return allowed
	}

	It("lets each principal do exactly what its role allows, in its own scope only", func(ctx SpecContext) {
		// The minimum role per command, and what each principal holds where.
		need := map[string]int{"SELECT": 1, "INSERT": 2, "UPDATE": 2, "DELETE": 3}
		rank := map[string]int{"Viewer": 1, "Member": 2, "Admin": 3, "Owner": 4}
		cases := map[string]struct {
			tctx string
			role func(t target) int
		}{}
		for name, id := range users {
			orgWide := name != "project Viewer"
			r := rank[name]
			if !orgWide {
				r = rank["Viewer"]
			}
			cases[name] = struct {
				tctx string
				role func(t target) int
			}{signSQL(ctx, pg.Pool(), id, "", f.orgA, ""), func(t target) int {
				if t.org != f.orgA || (!orgWide && t.project != f.projectA) {
					return 0
				}
				return r
			}}
		}
		cases["Member API key"] = struct {
			tctx string
			role func(t target) int
		}{signSQL(ctx, pg.Pool(), "", f.memberKey, f.orgA, ""), func(t target) int {
			if t.org != f.orgA {
				return 0
			}
			return rank["Member"]
		}}

		checked := 0
		for principal, c := range cases {
			for _, command := range db.Commands {
				for _, t := range targets() {
					want := c.role(t) >= need[command]
					Expect(probe(ctx, pg.Pool(), c.tctx, command, t)).To(Equal(want), "%s, %s in %s", principal, command, t.name)
					checked++
				}
			}
		}
		Expect(checked).To(Equal(6 * 4 * 3))
	})

	It("keeps rows in their organization and project, and a narrowed context narrowed", func(ctx SpecContext) {
		owner := signSQL(ctx, pg.Pool(), users["Owner"], "", f.orgA, "")
		for _, move := range []string{
			"UPDATE public.docs SET org_id = '" + f.orgB + "' WHERE body = 'a'",
			"INSERT INTO public.docs (org_id, project_id, body) VALUES ('" + f.orgB + "', '" + f.projectB + "', 'smuggled')",
		} {
			err := viaSDK(ctx, pg.Pool(), owner, "", func(tx pgx.Tx) error { _, err := tx.Exec(ctx, move); return err })
			Expect(isRLSViolation(err)).To(BeTrue(), "%s: %v", move, err)
		}
		var visible int
		Expect(viaSDK(ctx, pg.Pool(), owner, f.projectA, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT count(*) FROM public.docs").Scan(&visible)
		})).To(Succeed())
		Expect(visible).To(Equal(1), "narrowed to project A, the Owner sees that project's row only")
	})

	It("shows nothing without a context, after one on the same connection, or to a principal just removed", func(ctx SpecContext) {
		count := func(tctxValue string) int {
			var n int
			Expect(viaSDK(ctx, pg.Pool(), tctxValue, "", func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, "SELECT count(*) FROM public.docs").Scan(&n)
			})).To(Succeed())
			return n
		}
		Expect(count("")).To(BeZero(), "no context")
		Expect(count("v1.forged.context")).To(BeZero(), "a forged context")

		conn, err := pg.Pool().Acquire(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Release()
		member := signSQL(ctx, pg.Pool(), users["Member"], "", f.orgA, "")
		Expect(pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SET LOCAL ROLE tenancy_app; SELECT set_config('tenancy.context', '"+member+"', true)")
			return err
		})).To(Succeed())
		var leaked int
		Expect(pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE tenancy_app"); err != nil {
				return err
			}
			return tx.QueryRow(ctx, "SELECT count(*) FROM public.docs").Scan(&leaked)
		})).To(Succeed())
		Expect(leaked).To(BeZero(), "the next transaction on a pooled connection inherits no context")

		Expect(count(signSQL(ctx, pg.Pool(), "", f.revokedKey, f.orgA, ""))).To(BeZero(), "a revoked key")
		Expect(count(signSQL(ctx, pg.Pool(), "", f.expiredKey, f.orgA, ""))).To(BeZero(), "an expired key")
		Expect(count(signSQL(ctx, pg.Pool(), f.invitedOwner, "", f.orgA, ""))).To(BeZero(), "an invitation not yet accepted")

		viewer := signSQL(ctx, pg.Pool(), users["Viewer"], "", f.orgA, "")
		Expect(count(viewer)).To(Equal(2))
		_, err = pg.Pool().Exec(ctx, "DELETE FROM tenancy.memberships WHERE user_id = $1", users["Viewer"])
		Expect(err).NotTo(HaveOccurred())
		Expect(count(viewer)).To(BeZero(), "a deleted membership loses access at once, its context still valid")
	})

	It("needs every policy: without one, its command is refused to everyone", func(ctx SpecContext) {
		owner := signSQL(ctx, pg.Pool(), users["Owner"], "", f.orgA, "")
		own := targets()[0]
		for _, command := range db.Commands {
			Expect(probe(ctx, pg.Pool(), owner, command, own)).To(BeTrue(), command)
			_, err := pg.Pool().Exec(ctx, fmt.Sprintf("DROP POLICY %s ON public.docs", db.PolicyName(command)))
			Expect(err).NotTo(HaveOccurred())
			Expect(probe(ctx, pg.Pool(), owner, command, own)).To(BeFalse(), "without %s", db.PolicyName(command))
			_, err = pg.EnsurePolicies(ctx, table)
			Expect(err).NotTo(HaveOccurred())
		}
	})
})

// isRLSViolation reports whether err is PostgreSQL refusing a row by row-level security.
func isRLSViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// The identity tables as an application reads them (tenancy_app through the SDK): a context shows
// its own organization only, and only while its principal holds a live role there; the audit log
// shows everything to the organization's Admins and Owners, and their own rows to everyone else.
var _ = Describe("Isolation of the identity tables", Ordered, func() {
	var (
		pg *db.Postgres
		f  identityFixture
		// otherA is a second project of organization A, with a membership scoped to it.
		otherA, otherAMember string
		// member is an organization-wide Member of A; both an Admin of A and an Owner of B;
		// onlyB a Member of B alone; projectKey a live Viewer API key of project A.
		member, both, onlyB, projectKey string
	)

	BeforeAll(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "identity_rls")
		f = seedIdentities(ctx, pg)
		r, err := pg.UpsertProject(ctx, db.Project{UID: newUID(), OrganizationID: f.orgA, Name: "api"}, db.Actor{Name: "test"})
		Expect(err).NotTo(HaveOccurred())
		otherA = r.ID
		member = newUserWithMembership(ctx, pg.Pool(), f.orgA, "member@acme.test", "Member")
		both = newUserWithMembership(ctx, pg.Pool(), f.orgA, "both@acme.test", "Admin")
		onlyB = newUserWithMembership(ctx, pg.Pool(), f.orgB, "member@globex.test", "Member")
		Expect(pg.Pool().QueryRow(ctx, `
			WITH u AS (INSERT INTO tenancy.users (email) VALUES ('api@acme.test') RETURNING id)
			INSERT INTO tenancy.memberships (uid, organization_id, project_id, user_id, role, state)
			SELECT gen_random_uuid(), $1, $2, id, 'Member', 'Active' FROM u RETURNING user_id`, f.orgA, otherA).Scan(&otherAMember)).To(Succeed())
		_, err = pg.Pool().Exec(ctx, `INSERT INTO tenancy.memberships (uid, organization_id, user_id, role, state)
		                              VALUES (gen_random_uuid(), $1, $2, 'Owner', 'Active')`, f.orgB, both)
		Expect(err).NotTo(HaveOccurred())
		Expect(pg.Pool().QueryRow(ctx, `
			INSERT INTO tenancy.api_keys (uid, name, organization_id, project_id, key_id, prefix, hash, role)
			VALUES (gen_random_uuid(), 'ci', $1, $2, 'key4', 'tnc_', sha256('key4'::bytea), 'Viewer') RETURNING id`,
			f.orgA, f.projectA).Scan(&projectKey)).To(Succeed())

		// Besides the manager's rows (organization.created, …): one row of each principal's own.
		audit := func(org, user, key string) {
			_, err := pg.Pool().Exec(ctx, `INSERT INTO tenancy.audit_log (actor, actor_user_id, actor_api_key_id, action, organization_id)
			                              VALUES ('app', $1, $2, 'report.viewed', $3)`, nullable(user), nullable(key), org)
			Expect(err).NotTo(HaveOccurred())
		}
		audit(f.orgA, f.admin, "")
		audit(f.orgA, member, "")
		audit(f.orgA, f.projViewer, "")
		audit(f.orgA, both, "")
		audit(f.orgA, "", projectKey)
		audit(f.orgA, "", f.memberKey)
		audit(f.orgB, both, "")
		audit(f.orgB, onlyB, "")
	})

	// visible runs query as tenancy_app in the context and returns the ids it shows, as text.
	visible := func(ctx context.Context, tctxValue, project, query string, args ...any) []string {
		GinkgoHelper()
		var ids []string
		Expect(viaSDK(ctx, pg.Pool(), tctxValue, project, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, query, args...)
			if err != nil {
				return err
			}
			ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})).To(Succeed())
		return ids
	}
	// stored is what the table holds, read as the owner.
	stored := func(ctx context.Context, query string, args ...any) []string {
		GinkgoHelper()
		rows, err := pg.Pool().Query(ctx, query, args...)
		Expect(err).NotTo(HaveOccurred())
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		Expect(err).NotTo(HaveOccurred())
		return ids
	}
	const auditOfOrg = "SELECT id::text FROM tenancy.audit_log WHERE organization_id = $1 ORDER BY id"
	const ownAudit = `SELECT id::text FROM tenancy.audit_log WHERE organization_id = $1
	                  AND (actor_user_id = $2 OR actor_api_key_id = $2) ORDER BY id`

	It("shows the audit log whole to the organization's Admins and Owners, and their own rows to others", func(ctx SpecContext) {
		all := stored(ctx, auditOfOrg, f.orgA)
		Expect(len(all)).To(BeNumerically(">", 6), "the manager's rows and the principals' own")
		cases := []struct {
			who, tctx, project, principal string
			wholeLog                      bool
		}{
			{"an organization Admin", signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, ""), "", f.admin, true},
			{"an organization Admin narrowed to a project", signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, ""), f.projectA, f.admin, true},
			{"a project-scoped Viewer API key", signSQL(ctx, pg.Pool(), "", projectKey, f.orgA, f.projectA), "", projectKey, false},
			{"an organization Member", signSQL(ctx, pg.Pool(), member, "", f.orgA, ""), "", member, false},
			{"an organization Member API key", signSQL(ctx, pg.Pool(), "", f.memberKey, f.orgA, ""), "", f.memberKey, false},
			{"a project Viewer", signSQL(ctx, pg.Pool(), f.projViewer, "", f.orgA, f.projectA), "", f.projViewer, false},
		}
		for _, c := range cases {
			want := all
			if !c.wholeLog {
				want = stored(ctx, ownAudit, f.orgA, c.principal)
				Expect(want).To(HaveLen(1), "%s has one row of its own", c.who)
			}
			Expect(visible(ctx, c.tctx, c.project, "SELECT id::text FROM tenancy.audit_log ORDER BY id")).To(Equal(want), c.who)
		}
	})

	It("shows a project-scoped principal its organization, its project, and the memberships that reach it", func(ctx SpecContext) {
		for who, tctxValue := range map[string]string{
			"a project Viewer":                signSQL(ctx, pg.Pool(), f.projViewer, "", f.orgA, f.projectA),
			"a project-scoped Viewer API key": signSQL(ctx, pg.Pool(), "", projectKey, f.orgA, f.projectA),
		} {
			Expect(visible(ctx, tctxValue, "", "SELECT id::text FROM tenancy.organizations")).To(ConsistOf(f.orgA), who)
			Expect(visible(ctx, tctxValue, "", "SELECT id::text FROM tenancy.projects")).To(ConsistOf(f.projectA), who)
			Expect(visible(ctx, tctxValue, "", "SELECT id::text FROM tenancy.memberships ORDER BY id")).To(Equal(stored(ctx,
				"SELECT id::text FROM tenancy.memberships WHERE organization_id = $1 AND (project_id IS NULL OR project_id = $2) ORDER BY id",
				f.orgA, f.projectA)), who)
			Expect(visible(ctx, tctxValue, "", "SELECT id::text FROM tenancy.users_public")).
				To(SatisfyAll(ContainElements(f.admin, member, f.projViewer), Not(ContainElement(otherAMember))), who)
		}
		admin := signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, "")
		Expect(visible(ctx, admin, "", "SELECT id::text FROM tenancy.projects")).To(ConsistOf(f.projectA, otherA), "an organization-wide role reaches every project")
		Expect(visible(ctx, admin, "", "SELECT id::text FROM tenancy.users_public")).To(ContainElement(otherAMember))
	})

	It("shows a context of organization A nothing of organization B, even to an Active member of both", func(ctx SpecContext) {
		// Each query takes the organization whose rows it looks for. users_public is asked for the
		// users of that organization alone: memberships are filtered too, so it cannot join them.
		onlyMembersOf := func(org string) []string {
			return stored(ctx, `SELECT user_id::text FROM tenancy.memberships m WHERE organization_id = $1
			                    AND NOT EXISTS (SELECT 1 FROM tenancy.memberships o WHERE o.user_id = m.user_id AND o.organization_id <> $1)`, org)
		}
		tables := map[string]func(org string) (string, []any){
			"organizations": func(org string) (string, []any) {
				return "SELECT id::text FROM tenancy.organizations WHERE id = $1", []any{org}
			},
			"projects": func(org string) (string, []any) {
				return "SELECT id::text FROM tenancy.projects WHERE organization_id = $1", []any{org}
			},
			"memberships": func(org string) (string, []any) {
				return "SELECT id::text FROM tenancy.memberships WHERE organization_id = $1", []any{org}
			},
			"users_public": func(org string) (string, []any) {
				return "SELECT id::text FROM tenancy.users_public WHERE id = ANY($1::uuid[])", []any{onlyMembersOf(org)}
			},
			"audit_log": func(org string) (string, []any) {
				return "SELECT id::text FROM tenancy.audit_log WHERE organization_id = $1", []any{org}
			},
		}
		inA := signSQL(ctx, pg.Pool(), both, "", f.orgA, "")
		inB := signSQL(ctx, pg.Pool(), both, "", f.orgB, "")
		for table, rowsOf := range tables {
			ofA, argsA := rowsOf(f.orgA)
			ofB, argsB := rowsOf(f.orgB)
			// users_public shows the owner nothing either: it has no context.
			Expect(stored(ctx, strings.Replace(ofB, "users_public", "users", 1), argsB...)).NotTo(BeEmpty(), "organization B has %s rows", table)
			Expect(visible(ctx, inA, "", ofB, argsB...)).To(BeEmpty(), "%s of B in a context of A", table)
			Expect(visible(ctx, inA, "", ofA, argsA...)).NotTo(BeEmpty(), "%s of A in a context of A", table)
			Expect(visible(ctx, inB, "", ofB, argsB...)).NotTo(BeEmpty(), "%s of B in a context of B", table)
			Expect(visible(ctx, inB, "", ofA, argsA...)).To(BeEmpty(), "%s of A in a context of B", table)
		}
	})

	It("shows nothing to a principal without a live role in the context's organization", func(ctx SpecContext) {
		leaver := newUserWithMembership(ctx, pg.Pool(), f.orgA, "leaver@acme.test", "Owner")
		disabled := newUserWithMembership(ctx, pg.Pool(), f.orgA, "disabled@acme.test", "Owner")
		_, err := pg.Pool().Exec(ctx, "UPDATE tenancy.users SET disabled = true WHERE id = $1", disabled)
		Expect(err).NotTo(HaveOccurred())
		contexts := map[string]string{
			"a member of B alone, in a context of A": signSQL(ctx, pg.Pool(), onlyB, "", f.orgA, ""),
			"an invitation not yet accepted":         signSQL(ctx, pg.Pool(), f.invitedOwner, "", f.orgA, ""),
			"a disabled user":                        signSQL(ctx, pg.Pool(), disabled, "", f.orgA, ""),
			"a revoked key":                          signSQL(ctx, pg.Pool(), "", f.revokedKey, f.orgA, ""),
			"an expired key":                         signSQL(ctx, pg.Pool(), "", f.expiredKey, f.orgA, ""),
			"a member just removed":                  signSQL(ctx, pg.Pool(), leaver, "", f.orgA, ""),
		}
		Expect(visible(ctx, contexts["a member just removed"], "", "SELECT id::text FROM tenancy.organizations")).To(ConsistOf(f.orgA))
		_, err = pg.Pool().Exec(ctx, "DELETE FROM tenancy.memberships WHERE user_id = $1", leaver)
		Expect(err).NotTo(HaveOccurred())
		for who, tctxValue := range contexts {
			for _, table := range []string{"organizations", "projects", "memberships", "users_public", "audit_log"} {
				Expect(visible(ctx, tctxValue, "", "SELECT id::text FROM tenancy."+table)).To(BeEmpty(), "%s: %s", who, table)
			}
		}
	})
})
