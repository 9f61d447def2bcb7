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
