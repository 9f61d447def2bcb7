package importer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// missingColumnSQL writes the psql script that gives table t the organization column, in the
// order docs/rls-guide.md ("Bringing an existing table under RLS") explains. No step holds a lock
// that blocks the application for longer than a catalog change: every lock is waited for at most
// 5 seconds, and the script stops at the first error (a timeout included), so that running it
// again goes on from there. Names appear only quoted, and none has a character that could end
// a comment, a dollar quote or a quoted name for psql (scriptSafe).
func missingColumnSQL(schema string, t sourceTable, orgCol, tenantTable string) string {
	table := pgx.Identifier{schema, t.Name}.Sanitize()
	col := pgx.Identifier{orgCol}.Sanitize()
	name := func(suffix string) string { return identifier(t.Name, orgCol, suffix) }
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("-- %s has no column %s. This psql script brings it under row-level security without\n", table, col)
	b.WriteString("-- long locks (docs/rls-guide.md, \"Bringing an existing table under RLS\"): run it with\n")
	b.WriteString("-- psql -f as the table's owner or a superuser (a role bound by row-level security would\n")
	b.WriteString("-- backfill nothing). It stops at the first error; after a lock timeout, run it again.\n")
	b.WriteString("\\set ON_ERROR_STOP on\n")
	b.WriteString("SET lock_timeout = '5s';\n")
	b.WriteString("SET client_min_messages = warning;\n\n")

	b.WriteString("-- 1. The column, nullable and without a default: a change of the catalog only")
	if p := t.Parent; p != nil {
		parent := pgx.Identifier{schema, p.ParentTable}.Sanitize()
		fk, parentKey := pgx.Identifier{p.Column}.Sanitize(), pgx.Identifier{p.ParentColumn}.Sanitize()
		fn := pgx.Identifier{schema, name("fill")}.Sanitize()
		b.WriteString(". In the same\n")
		w("--    transaction, a trigger that fills it on insert from %s while the application does\n", parent)
		b.WriteString("--    not write it yet. The lookup runs as the inserting role: under row-level security on\n")
		b.WriteString("--    the parent it finds only the caller's own organization's rows; the TenantTable's\n")
		b.WriteString("--    policies refuse a row of another organization in any case. Drop the trigger and its\n")
		b.WriteString("--    function once the application writes the column itself.\n")
		b.WriteString("BEGIN;\n")
		w("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s uuid;\n", table, col)
		w("CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $fill$\nBEGIN\n", fn)
		w("    IF NEW.%s IS NULL THEN\n", col)
		w("        SELECT p.%s INTO NEW.%s FROM %s p WHERE p.%s = NEW.%s;\n", col, col, parent, parentKey, fk)
		b.WriteString("    END IF;\n    RETURN NEW;\nEND\n$fill$;\n")
		w("CREATE OR REPLACE TRIGGER %s BEFORE INSERT OR UPDATE OF %s ON %s\n    FOR EACH ROW EXECUTE FUNCTION %s();\n",
			pgx.Identifier{name("fill")}.Sanitize(), fk, table, fn)
		b.WriteString("COMMIT;\n\n")
		w("-- 2. Backfill the existing rows from the parent (%s.%s → %s.%s) in batches of 5,000,\n",
			table, fk, parent, parentKey)
		b.WriteString("--    each committed on its own, so no lock is held for long and the table stays writable.\n")
		b.WriteString("DO $backfill$\nDECLARE\n    updated bigint;\nBEGIN\n    LOOP\n")
		w("        UPDATE %s c SET %s = p.%s FROM %s p\n", table, col, col, parent)
		w("        WHERE p.%s = c.%s AND c.ctid = ANY (ARRAY(\n", parentKey, fk)
		w("            SELECT c2.ctid FROM %s c2 JOIN %s p2 ON p2.%s = c2.%s\n", table, parent, parentKey, fk)
		w("            WHERE c2.%s IS NULL AND p2.%s IS NOT NULL LIMIT 5000));\n", col, col)
		b.WriteString("        GET DIAGNOSTICS updated = ROW_COUNT;\n        EXIT WHEN updated = 0;\n        COMMIT;\n    END LOOP;\nEND\n$backfill$;\n\n")
	} else {
		b.WriteString(".\n")
		w("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s uuid;\n\n", table, col)
		b.WriteString("-- 2. No foreign key of this table leads to a table with the column, so the import cannot\n")
		b.WriteString("--    tell where a row's organization comes from: make the application write the column on\n")
		b.WriteString("--    insert, then backfill the existing rows in batches of a few thousand, each committed on\n")
		b.WriteString("--    its own. Until then the script stops here: the NOT NULL of step 3 would refuse the\n")
		b.WriteString("--    application's inserts. Then run it again with -v ready=1.\n")
		b.WriteString("\\if :{?ready}\n\\else\n")
		w("\\echo 'Step 1 done. Make the application write the column and backfill it, then run this again with psql -v ready=1.'\n")
		b.WriteString("\\quit\n\\endif\n\n")
	}
	check := pgx.Identifier{name("nn")}.Sanitize()
	b.WriteString("-- 3. NOT NULL without a long lock: first make sure no row is left without an organization\n")
	b.WriteString("--    (assign or delete those), then a NOT VALID check (instant), validated while writes go on\n")
	b.WriteString("--    (SHARE UPDATE EXCLUSIVE), then SET NOT NULL, which the validated check spares a scan.\n")
	w("DO $left$\nBEGIN\n    IF EXISTS (SELECT 1 FROM %s WHERE %s IS NULL) THEN\n", table, col)
	w("        RAISE EXCEPTION 'rows of %%.%% have no %%: assign or delete them, then run this again', %s, %s, %s;\n",
		quoteLiteral(schema), quoteLiteral(t.Name), quoteLiteral(orgCol))
	b.WriteString("    END IF;\nEND\n$left$;\n")
	w("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s;\n", table, check)
	w("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID;\n", table, check, col)
	w("ALTER TABLE %s VALIDATE CONSTRAINT %s;\n", table, check)
	w("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL;\n", table, col)
	w("ALTER TABLE %s DROP CONSTRAINT %s;\n\n", table, check)

	index := name("idx")
	b.WriteString("-- 4. The index the policies use, built without blocking writes; an invalid one that an\n")
	b.WriteString("--    interrupted run left behind is dropped first.\n")
	w("SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid\n")
	w("               WHERE c.relname = %s AND c.relnamespace = %s::regnamespace AND NOT i.indisvalid) AS invalid_index \\gset\n",
		quoteLiteral(index), quoteLiteral(pgx.Identifier{schema}.Sanitize()))
	b.WriteString("\\if :invalid_index\n")
	w("DROP INDEX CONCURRENTLY %s;\n", pgx.Identifier{schema, index}.Sanitize())
	b.WriteString("\\endif\n")
	w("CREATE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (%s);\n\n", pgx.Identifier{index}.Sanitize(), table, col)
	w("-- 5. Then apply the TenantTable beside this file (%s.yaml).\n", tenantTable)
	return b.String()
}

// identifier is <table>_<column>_<suffix> within PostgreSQL's 63 bytes, cut at a character; a
// name that had to be cut ends in a hash of the whole, so two long names never collide.
func identifier(table, column, suffix string) string {
	base := table + "_" + column
	if max := 63 - len(suffix) - 1; len(base) > max {
		sum := sha256.Sum256([]byte(base))
		base = cutBytes(base, max-9) + "_" + hex.EncodeToString(sum[:4])
	}
	return base + "_" + suffix
}

// cutBytes cuts s to at most n bytes without splitting a character.
func cutBytes(s string, n int) string {
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
