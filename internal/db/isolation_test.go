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
