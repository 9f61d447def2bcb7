package db_test

import (
	"errors"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/db"
)

var _ = Describe("TenantTable policies", func() {
	var (
		pg *db.Postgres
		f  identityFixture
	)
	table := db.TenantTable{
		Name: "invoices", Schema: "public", Table: "invoices", OrganizationColumn: "org_id",
		Access: map[string]string{"SELECT": "Viewer", "INSERT": "Member", "UPDATE": "Member", "DELETE": "Admin"},
	}

	BeforeEach(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "tenanttables")
		f = seedIdentities(ctx, pg)
		_, err := pg.Pool().Exec(ctx, `
			CREATE TABLE public.invoices (id serial PRIMARY KEY, org_id uuid NOT NULL, total int NOT NULL);
			GRANT SELECT, INSERT, UPDATE, DELETE ON public.invoices TO tenancy_app;
			GRANT USAGE ON SEQUENCE public.invoices_id_seq TO tenancy_app`)
		Expect(err).NotTo(HaveOccurred())
		_, err = pg.Pool().Exec(ctx, "INSERT INTO public.invoices (org_id, total) VALUES ($1, 10), ($1, 20), ($2, 99)", f.orgA, f.orgB)
		Expect(err).NotTo(HaveOccurred())
	})

	totals := func(ctx SpecContext, user string) []int {
		GinkgoHelper()
		var got []int
		Expect(inContext(ctx, pg.Pool(), signSQL(ctx, pg.Pool(), user, "", f.orgA, ""), "", func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, "SELECT total FROM public.invoices ORDER BY total")
			if err != nil {
				return err
			}
			got, err = pgx.CollectRows(rows, pgx.RowTo[int])
			return err
		})).To(Succeed())
		return got
	}

	It("puts the table under forced RLS with four policies, and restores what is changed by hand", func(ctx SpecContext) {
		report, err := pg.EnsurePolicies(ctx, table)
		Expect(err).NotTo(HaveOccurred())
		Expect(report.Restored).To(HaveLen(5))
		Expect(report.Warnings).To(ContainElement(ContainSubstring("column org_id has no index")))
		Expect(totals(ctx, f.admin)).To(Equal([]int{10, 20}), "an Admin of acme sees acme's rows only")
		Expect(totals(ctx, f.projViewer)).To(BeEmpty(), "a project member has no organization-wide role")

		again, err := pg.EnsurePolicies(ctx, table)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Restored).To(BeEmpty(), "a second pass changes nothing")

		for _, tamper := range []string{
			"ALTER POLICY tenancy_select ON public.invoices USING (true)",
			"DROP POLICY tenancy_delete ON public.invoices",
			"ALTER TABLE public.invoices NO FORCE ROW LEVEL SECURITY",
			"ALTER TABLE public.invoices DISABLE ROW LEVEL SECURITY",
		} {
			_, err := pg.Pool().Exec(ctx, tamper)
			Expect(err).NotTo(HaveOccurred())
			report, err := pg.EnsurePolicies(ctx, table)
			Expect(err).NotTo(HaveOccurred())
			Expect(report.Restored).To(HaveLen(1), tamper)
		}
		Expect(totals(ctx, f.admin)).To(Equal([]int{10, 20}))

		By("a deleted TenantTable leaves the table closed, not open")
		Expect(pg.DropPolicies(ctx, table, false)).To(Succeed())
		Expect(totals(ctx, f.admin)).To(BeEmpty())
		Expect(pg.DropPolicies(ctx, table, true)).To(Succeed())
		Expect(totals(ctx, f.admin)).To(Equal([]int{10, 20, 99}), "with RLS off by request, the grants alone decide")
	})

	It("refuses to move a row into another organization, and names what is missing", func(ctx SpecContext) {
		_, err := pg.EnsurePolicies(ctx, table)
		Expect(err).NotTo(HaveOccurred())
		moved := inContext(ctx, pg.Pool(), signSQL(ctx, pg.Pool(), f.admin, "", f.orgA, ""), "", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE public.invoices SET org_id = $1 WHERE total = 10", f.orgB)
			return err
		})
		Expect(moved).To(MatchError(ContainSubstring("row-level security")))

		_, err = pg.Pool().Exec(ctx, `
			CREATE TABLE public.texty (org_id text);
			CREATE TABLE public.orgless (id int)`)
		Expect(err).NotTo(HaveOccurred())
		for name, reason := range map[string]string{"texty": "ColumnNotUUID", "orgless": "ColumnNotFound", "nowhere": "TableNotFound"} {
			broken := table
			broken.Table = name
			_, err := pg.EnsurePolicies(ctx, broken)
			var missing *db.TableMissingError
			Expect(errors.As(err, &missing)).To(BeTrue(), "%s: %v", name, err)
			Expect(missing.Reason).To(Equal(reason))
		}
	})
})

var _ = Describe("TenantTable policies in reserved schemas", func() {
	var (
		pg *db.Postgres
		f  identityFixture
	)
	// reserved names a table in schema; tenancy.users and tenancy.audit_log have uuid columns, so
	// only the refusal keeps policies off them.
	reserved := func(schema, table, orgColumn string) db.TenantTable {
		return db.TenantTable{
			Name: "sneaky", Schema: schema, Table: table, OrganizationColumn: orgColumn,
			Access: map[string]string{"SELECT": "Viewer", "INSERT": "Member", "UPDATE": "Member", "DELETE": "Admin"},
		}
	}

	BeforeEach(func(ctx SpecContext) {
		_, pg = newMigratedDatabase(ctx, "reserved")
		f = seedIdentities(ctx, pg)
	})

	// rlsState is what row-level security looks like on a table: enabled, forced, its policies.
	rlsState := func(ctx SpecContext, schema, table string) string {
		GinkgoHelper()
		var state string
		Expect(pg.Pool().QueryRow(ctx, `
			SELECT format('enabled=%s forced=%s policies=%s', c.relrowsecurity, c.relforcerowsecurity,
			              (SELECT coalesce(string_agg(p.polname, ',' ORDER BY p.polname), '') FROM pg_policy p WHERE p.polrelid = c.oid))
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2`, schema, table).Scan(&state)).To(Succeed())
		return state
	}

	It("refuses the operator's schema and PostgreSQL's, and changes nothing there", func(ctx SpecContext) {
		tables := []db.TenantTable{
			reserved("tenancy", "users", "id"),
			reserved("tenancy", "audit_log", "organization_id"),
			reserved("pg_catalog", "pg_class", "oid"),
			reserved("information_schema", "sql_features", "feature_id"),
			reserved("pg_toast", "pg_toast_1262", "chunk_id"),
			reserved("pg_temp_1", "scratch", "org_id"),
		}
		before := map[string]string{}
		for _, t := range tables[:2] {
			before[t.Table] = rlsState(ctx, t.Schema, t.Table)
		}
		Expect(before["users"]).To(Equal("enabled=t forced=f policies=authd_all"))
		for _, t := range tables {
			_, err := pg.EnsurePolicies(ctx, t)
			var refused *db.ReservedSchemaError
			Expect(errors.As(err, &refused)).To(BeTrue(), "%s.%s: %v", t.Schema, t.Table, err)
			Expect(err).To(MatchError(ContainSubstring("schema " + t.Schema + ", which is reserved")))
			Expect(pg.DropPolicies(ctx, t, true)).To(Succeed(), "a deleted TenantTable of %s.%s has nothing to drop", t.Schema, t.Table)
		}
		for _, t := range tables[:2] {
			Expect(rlsState(ctx, t.Schema, t.Table)).To(Equal(before[t.Table]), "%s.%s", t.Schema, t.Table)
		}

		By("an organization's purge leaves the identity rows to the organization's own deletion")
		var uid string
		Expect(pg.Pool().QueryRow(ctx, "SELECT uid::text FROM tenancy.organizations WHERE id = $1", f.orgA).Scan(&uid)).To(Succeed())
		audited := countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE organization_id = $1", f.orgA)
		Expect(pg.PurgeOrganizationData(ctx, uid, "acme", tables[1:2], db.Actor{Name: "test"})).To(Succeed())
		Expect(countRows(ctx, pg, "SELECT count(*) FROM tenancy.audit_log WHERE organization_id = $1 AND action <> 'organization.data-purged'", f.orgA)).
			To(Equal(audited), "the audit log of the organization is kept")
	})
})
