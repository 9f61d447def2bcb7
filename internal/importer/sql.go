package importer

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// missingColumnSQL writes the lock-safe steps that give table t the organization column, in the
// order docs/rls-guide.md ("Bringing an existing table under RLS") explains: no step holds a lock
// that blocks the application for longer than a catalog change.
func missingColumnSQL(schema string, t sourceTable, orgCol string) string {
	table := pgx.Identifier{schema, t.Name}.Sanitize()
	col := pgx.Identifier{orgCol}.Sanitize()
	name := func(suffix string) string { return identifier(t.Name, orgCol, suffix) }
	var b strings.Builder
	fmt.Fprintf(&b, "-- %s has no %s. Bring it under row-level security without long locks\n", table, orgCol)
	b.WriteString("-- (docs/rls-guide.md, \"Bringing an existing table under RLS\"). Run the steps one by one,\n")
	b.WriteString("-- outside a transaction block (psql -f runs each statement on its own).\n\n")
	b.WriteString("-- 1. The column, nullable and without a default: a change of the catalog only, whose short\n")
	b.WriteString("--    lock waits at most 5 s for running transactions (run it again on a timeout).\n")
	b.WriteString("SET lock_timeout = '5s';\n")
	fmt.Fprintf(&b, "ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s uuid;\n", table, col)
	b.WriteString("RESET lock_timeout;\n\n")
	if p := t.Parent; p != nil {
		parent := pgx.Identifier{schema, p.ParentTable}.Sanitize()
		fk, parentKey := pgx.Identifier{p.Column}.Sanitize(), pgx.Identifier{p.ParentColumn}.Sanitize()
		fn := pgx.Identifier{schema, name("fill")}.Sanitize()
		fmt.Fprintf(&b, "--    New rows take the column from %s while the application does not write it yet. The\n", p.ParentTable)
		b.WriteString("--    lookup runs as the inserting role: under row-level security it finds only the parent\n")
		b.WriteString("--    rows of the caller's own organization, and an insert with another's parent is refused\n")
		b.WriteString("--    by step 3's NOT NULL.\n")
		fmt.Fprintf(&b, "CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $fill$\nBEGIN\n", fn)
		fmt.Fprintf(&b, "    IF NEW.%s IS NULL THEN\n", col)
		fmt.Fprintf(&b, "        SELECT p.%s INTO NEW.%s FROM %s p WHERE p.%s = NEW.%s;\n", col, col, parent, parentKey, fk)
		b.WriteString("    END IF;\n    RETURN NEW;\nEND\n$fill$;\n")
		fmt.Fprintf(&b, "CREATE OR REPLACE TRIGGER %s BEFORE INSERT OR UPDATE OF %s ON %s\n    FOR EACH ROW EXECUTE FUNCTION %s();\n\n",
			pgx.Identifier{name("fill")}.Sanitize(), fk, table, fn)
		fmt.Fprintf(&b, "-- 2. Backfill the existing rows from %s (%s.%s → %s.%s) in batches of 5,000, each committed\n",
			p.ParentTable, t.Name, p.Column, p.ParentTable, p.ParentColumn)
		b.WriteString("--    on its own, so no lock is held for long and the table stays writable.\n")
		b.WriteString("DO $backfill$\nDECLARE\n    updated bigint;\nBEGIN\n    LOOP\n")
		fmt.Fprintf(&b, "        UPDATE %s c SET %s = p.%s FROM %s p\n", table, col, col, parent)
		fmt.Fprintf(&b, "        WHERE p.%s = c.%s AND c.ctid = ANY (ARRAY(\n", parentKey, fk)
		fmt.Fprintf(&b, "            SELECT c2.ctid FROM %s c2 JOIN %s p2 ON p2.%s = c2.%s\n", table, parent, parentKey, fk)
		fmt.Fprintf(&b, "            WHERE c2.%s IS NULL AND p2.%s IS NOT NULL LIMIT 5000));\n", col, col)
		b.WriteString("        GET DIAGNOSTICS updated = ROW_COUNT;\n        EXIT WHEN updated = 0;\n        COMMIT;\n    END LOOP;\nEND\n$backfill$;\n\n")
	} else {
		fmt.Fprintf(&b, "-- 2. No foreign key of %s leads to a table with %s, so the import cannot tell where\n", t.Name, orgCol)
		fmt.Fprintf(&b, "--    a row's organization comes from: make the application write %s on insert, then\n", orgCol)
		b.WriteString("--    backfill the existing rows in batches of a few thousand, each committed on its own,\n")
		b.WriteString("--    before step 3.\n\n")
	}
	check := pgx.Identifier{name("nn")}.Sanitize()
	b.WriteString("-- 3. NOT NULL without a long lock: a NOT VALID check (instant), validated while writes go on\n")
	b.WriteString("--    (SHARE UPDATE EXCLUSIVE), then SET NOT NULL, which uses the validated check instead of a scan.\n")
	fmt.Fprintf(&b, "ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID;\n", table, check, col)
	fmt.Fprintf(&b, "ALTER TABLE %s VALIDATE CONSTRAINT %s;\n", table, check)
	fmt.Fprintf(&b, "ALTER TABLE %s ALTER COLUMN %s SET NOT NULL;\n", table, col)
	fmt.Fprintf(&b, "ALTER TABLE %s DROP CONSTRAINT %s;\n\n", table, check)
	b.WriteString("-- 4. The index the policies use, built without blocking writes.\n")
	fmt.Fprintf(&b, "CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (%s);\n\n", pgx.Identifier{name("idx")}.Sanitize(), table, col)
	fmt.Fprintf(&b, "-- 5. Then apply the TenantTable beside this file (%s.yaml).\n", t.Name)
	return b.String()
}

// identifier is <table>_<column>_<suffix>, cut to PostgreSQL's 63 bytes.
func identifier(table, column, suffix string) string {
	base := table + "_" + column
	if max := 63 - len(suffix) - 1; len(base) > max {
		base = base[:max]
	}
	return base + "_" + suffix
}
