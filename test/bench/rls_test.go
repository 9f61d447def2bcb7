package bench

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// rlsRows and rlsOrganizations size the table: 1,000,000 rows over 1,000 organizations.
const (
	rlsRows          = 1_000_000
	rlsOrganizations = 1_000
)

// BenchmarkTenantScopedSelect runs the same tenant-scoped SELECT on a table of 1,000,000 rows two
// ways in one run: as an application (tenancy_app, no BYPASSRLS) through the TenantTable
// policies with a signed request context, and as a BYPASSRLS role with an explicit WHERE on the
// organization column. Target: the RLS path within 1.2× of the explicit one.
func BenchmarkTenantScopedSelect(b *testing.B) {
	ctx := context.Background()
	_, pg := testenv.NewMigratedDatabase(b, "benchrls")
	org, err := pg.UpsertOrganization(ctx, db.Organization{UID: uuid.NewString(), Name: "bench", Tier: "Enterprise", Namespace: "bench"}, db.Actor{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	var userID string
	if err := pg.Pool().QueryRow(ctx, `
		WITH u AS (INSERT INTO tenancy.users (email) VALUES ('bench@example.com') RETURNING id)
		INSERT INTO tenancy.memberships (uid, organization_id, user_id, role, state)
		SELECT gen_random_uuid(), $1, id, 'Viewer', 'Active' FROM u RETURNING user_id`, org.ID).Scan(&userID); err != nil {
		b.Fatal(err)
	}
	// The benchmark's organization owns one row in rlsOrganizations; the others are random ids.
	for _, step := range []struct {
		sql  string
		args []any
	}{
		{"CREATE TABLE public.events (id bigserial PRIMARY KEY, org_id uuid NOT NULL, amount int NOT NULL)", nil},
		{"CREATE TABLE orgs AS SELECT CASE WHEN i = 0 THEN $1::uuid ELSE gen_random_uuid() END AS id, i FROM generate_series(0, $2::int - 1) i",
			[]any{org.ID, rlsOrganizations}},
		{"INSERT INTO public.events (org_id, amount) SELECT o.id, s % 100 FROM generate_series(0, $1::int - 1) s JOIN orgs o ON o.i = s % $2::int",
			[]any{rlsRows, rlsOrganizations}},
		{`CREATE INDEX events_org_id_idx ON public.events (org_id);
		  GRANT SELECT ON public.events TO tenancy_app;
		  DO $$ BEGIN CREATE ROLE bench_bypass NOLOGIN BYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
		  GRANT USAGE ON SCHEMA public TO bench_bypass;
		  GRANT SELECT ON public.events TO bench_bypass;
		  ANALYZE public.events`, nil},
	} {
		if _, err := pg.Pool().Exec(ctx, step.sql, step.args...); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := pg.EnsurePolicies(ctx, db.TenantTable{
		Name: "events", Schema: "public", Table: "events", OrganizationColumn: "org_id",
		Access: map[string]string{"SELECT": "Viewer", "INSERT": "Member", "UPDATE": "Member", "DELETE": "Admin"},
	}); err != nil {
		b.Fatal(err)
	}
	var signed string
	if err := pg.Pool().QueryRow(ctx, "SELECT tenancy.sign_context($1, NULL, $2, NULL, interval '1 hour')", userID, org.ID).Scan(&signed); err != nil {
		b.Fatal(err)
	}
	const query = "SELECT count(*), sum(amount) FROM public.events"
	want := int64(rlsRows / rlsOrganizations)

	b.Run("rls-as-tenancy_app", func(b *testing.B) {
		for b.Loop() {
			var n, sum int64
			err := pgx.BeginFunc(ctx, pg.Pool(), func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "SELECT set_config('tenancy.context', $1, true)", signed); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "SET LOCAL ROLE tenancy_app"); err != nil {
					return err
				}
				return tx.QueryRow(ctx, query).Scan(&n, &sum)
			})
			if err != nil || n != want {
				b.Fatalf("RLS path: %d rows, %v", n, err)
			}
		}
	})
	// The same transaction shape: a setting, a role (one with BYPASSRLS), the query.
	b.Run("explicit-where-bypassrls", func(b *testing.B) {
		for b.Loop() {
			var n, sum int64
			err := pgx.BeginFunc(ctx, pg.Pool(), func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "SELECT set_config('tenancy.context', '', true)"); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "SET LOCAL ROLE bench_bypass"); err != nil {
					return err
				}
				return tx.QueryRow(ctx, query+" WHERE org_id = $1", org.ID).Scan(&n, &sum)
			})
			if err != nil || n != want {
				b.Fatalf("explicit path: %d rows, %v", n, err)
			}
		}
	})
}
