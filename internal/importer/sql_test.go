package importer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// TestMissingColumnScript runs the scripts the import writes with psql, on PostgreSQL: a table
// whose parent has the organization column is backfilled and made NOT NULL in one run; a table
// without one stops after the column until told it is ready; an invalid index left by an
// interrupted run is replaced.
func TestMissingColumnScript(t *testing.T) {
	testenv.SkipIfShort(t, "PostgreSQL and psql")
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("psql comes with PostgreSQL (hack/postgres.sh installs it): %v", err)
	}
	ctx := context.Background()
	database, pg := testenv.NewMigratedDatabase(t, "script")
	exec1 := func(sql string) {
		t.Helper()
		if _, err := pg.Pool().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec1(`CREATE TABLE public.orders (id bigint PRIMARY KEY, organization_id uuid NOT NULL);
		CREATE TABLE public."order lines" (id bigint PRIMARY KEY, "order id" bigint NOT NULL REFERENCES public.orders, qty int);
		CREATE TABLE public.notes (id bigint PRIMARY KEY, body text);
		INSERT INTO public.orders SELECT i, gen_random_uuid() FROM generate_series(1, 30) i;
		INSERT INTO public."order lines" SELECT i, 1 + i % 30, i FROM generate_series(1, 12000) i;
		INSERT INTO public.notes VALUES (1, 'old')`)
	run := func(script string, args ...string) (string, error) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "script.sql")
		if err := writeScript(path, script); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, psql, append([]string{"-X", "-q", "-d", database.URL, "-f", path}, args...)...).CombinedOutput()
		return string(out), err
	}
	notNull := func(table string) bool {
		t.Helper()
		var attnotnull bool
		if err := pg.Pool().QueryRow(ctx, `SELECT attnotnull FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'organization_id'`,
			pgx.Identifier{"public", table}.Sanitize()).Scan(&attnotnull); err != nil {
			t.Fatal(err)
		}
		return attnotnull
	}

	lines := sourceTable{Name: "order lines", Parent: &foreignKey{Column: "order id", ParentTable: "orders", ParentColumn: "id"}}
	// An interrupted earlier run left an invalid index of the name the script uses.
	exec1(`ALTER TABLE public."order lines" ADD COLUMN organization_id uuid`)
	exec1(`CREATE INDEX "` + identifier("order lines", "organization_id", "idx") + `" ON public."order lines" (organization_id);
		UPDATE pg_index SET indisvalid = false WHERE indexrelid = '"` + identifier("order lines", "organization_id", "idx") + `"'::regclass`)
	if out, err := run(missingColumnSQL("public", lines, "organization_id", "order-lines")); err != nil {
		t.Fatalf("the script with a parent: %v\n%s", err, out)
	}
	var left, valid int
	if err := pg.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE l.organization_id IS DISTINCT FROM o.organization_id)
		FROM public."order lines" l JOIN public.orders o ON o.id = l."order id"`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if err := pg.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_index WHERE indrelid = 'public."order lines"'::regclass AND indisvalid`).Scan(&valid); err != nil {
		t.Fatal(err)
	}
	if left != 0 || !notNull("order lines") || valid != 2 {
		t.Fatalf("after the script: %d rows without their order's organization, NOT NULL %t, %d valid indexes (want 0, true, 2)", left, notNull("order lines"), valid)
	}
	var filled string
	if err := pg.Pool().QueryRow(ctx, `INSERT INTO public."order lines" (id, "order id", qty) VALUES (99999, 3, 1) RETURNING organization_id::text`).Scan(&filled); err != nil {
		t.Fatalf("an insert that leaves the column out: %v", err)
	}

	notes := sourceTable{Name: "notes"}
	script := missingColumnSQL("public", notes, "organization_id", "notes")
	out, err := run(script)
	if err != nil || !strings.Contains(out, "Step 1 done") || notNull("notes") {
		t.Fatalf("without a parent, the first run stops after the column: err %v, NOT NULL %t\n%s", err, notNull("notes"), out)
	}
	if out, err := run(script, "-v", "ready=1"); err == nil || !strings.Contains(out, "have no organization_id") {
		t.Fatalf("a row without an organization stops the script before NOT NULL: err %v\n%s", err, out)
	}
	exec1(`UPDATE public.notes SET organization_id = gen_random_uuid()`)
	if out, err := run(script, "-v", "ready=1"); err != nil || !notNull("notes") {
		t.Fatalf("once backfilled, -v ready=1 goes on: err %v, NOT NULL %t\n%s", err, notNull("notes"), out)
	}
}

func writeScript(path, script string) error {
	return os.WriteFile(path, []byte(script), 0o600)
}
