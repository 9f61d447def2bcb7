package db

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// TenantTable is an application table put under row-level security by a TenantTable resource.
type TenantTable struct {
	// Name is the TenantTable resource's name, recorded in the policies' comments.
	Name               string
	Schema             string
	Table              string
	OrganizationColumn string
	ProjectColumn      string // empty: the table has no project column
	// Access is the minimum role per command: SELECT, INSERT, UPDATE, DELETE.
	Access map[string]string
}

// Commands are the SQL commands that get one policy each, in order.
var Commands = []string{"SELECT", "INSERT", "UPDATE", "DELETE"}

// PolicyName is the name of the policy for command (SELECT, INSERT, UPDATE or DELETE).
func PolicyName(command string) string { return "tenancy_" + strings.ToLower(command) }

// policyMarker begins the comment of every policy the operator made.
const policyMarker = "Managed by the Tenancy operator"

// TableMissingError says that the table, or one of its columns, is not there or not a uuid.
type TableMissingError struct{ Reason, Message string }

func (e *TableMissingError) Error() string { return e.Message }

// ReservedSchemaError says that a TenantTable names a table in a schema the operator must never
// change: its own (tenancy), whose row-level security guards the identities, or PostgreSQL's
// (information_schema and every pg_ schema: pg_catalog, pg_toast, temporary schemas).
type ReservedSchemaError struct{ Schema, Table string }

func (e *ReservedSchemaError) Error() string {
	return fmt.Sprintf("table %s.%s is in schema %s, which is reserved (the operator's own or PostgreSQL's): "+
		"a TenantTable protects application tables only", e.Schema, e.Table, e.Schema)
}

// ReservedSchema reports whether the operator must leave schema alone: its own (tenancy), or
// PostgreSQL's (information_schema, and pg_…, a prefix PostgreSQL refuses to others' schemas).
func ReservedSchema(schema string) bool {
	return schema == "tenancy" || schema == "information_schema" || strings.HasPrefix(schema, "pg_")
}

// reservedSchemaSQL is the same rule on the namespace the catalog resolved, as n.
const reservedSchemaSQL = `(n.nspname IN ('tenancy', 'information_schema') OR n.nspname LIKE 'pg\_%')`

// TableReport is what EnsurePolicies found and did.
type TableReport struct {
	// Restored names what was put back: policies missing or changed by hand, RLS disabled or
	// not forced.
	Restored []string
	// Warnings are conditions that weaken isolation without the operator being able to fix them.
	Warnings []string
}

// EnsurePolicies checks the table and its columns, enables and forces row-level security and
// makes the four policies exactly as t says, replacing any that is missing or was changed by
// hand. It is idempotent and writes nothing when all is in place. A table in a reserved schema is
// refused with a *ReservedSchemaError before any SQL runs.
func (p *Postgres) EnsurePolicies(ctx context.Context, t TenantTable) (TableReport, error) {
	if ReservedSchema(t.Schema) {
		return TableReport{}, &ReservedSchemaError{Schema: t.Schema, Table: t.Table}
	}
	if err := p.ensureMigrated(); err != nil {
		return TableReport{}, err
	}
	var report TableReport
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		state, err := inspectTable(ctx, tx, t)
		if err != nil {
			return err
		}
		table := pgx.Identifier{t.Schema, t.Table}.Sanitize()
		if !state.rlsEnabled || !state.rlsForced {
			if _, err := tx.Exec(ctx, "ALTER TABLE "+table+" ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY"); err != nil {
				return fmt.Errorf("enabling row-level security: %w", err)
			}
			report.Restored = append(report.Restored, "row-level security (enabled and forced)")
		}
		for _, command := range Commands {
			name := PolicyName(command)
			using, check := policyExpressions(t, command)
			want := fingerprint(command, using, check)
			current, exists := state.policies[name]
			if exists && strings.HasPrefix(current.comment, commentFor(t.Name, want)+"; definition ") && current.definition == current.recordedDefinition() {
				continue
			}
			if exists {
				if _, err := tx.Exec(ctx, "DROP POLICY "+pgx.Identifier{name}.Sanitize()+" ON "+table); err != nil {
					return fmt.Errorf("dropping policy %s: %w", name, err)
				}
			}
			sql := "CREATE POLICY " + pgx.Identifier{name}.Sanitize() + " ON " + table + " AS PERMISSIVE FOR " + command + " TO PUBLIC"
			if using != "" {
				sql += " USING (" + using + ")"
			}
			if check != "" {
				sql += " WITH CHECK (" + check + ")"
			}
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("creating policy %s: %w", name, err)
			}
			// The comment records the spec's fingerprint and the definition as PostgreSQL
			// normalised it, so that an ALTER POLICY by hand shows up at the next check.
			var definition string
			if err := tx.QueryRow(ctx, policyDefinitionSQL, t.Schema, t.Table, name).Scan(&definition); err != nil {
				return fmt.Errorf("reading policy %s back: %w", name, err)
			}
			comment := commentFor(t.Name, want) + "; definition " + shortHash(definition)
			if _, err := tx.Exec(ctx, "COMMENT ON POLICY "+pgx.Identifier{name}.Sanitize()+" ON "+table+" IS "+quoteLiteral(comment)); err != nil {
				return fmt.Errorf("commenting policy %s: %w", name, err)
			}
			report.Restored = append(report.Restored, "policy "+name)
		}
		report.Warnings = state.warnings(t)
		return nil
	})
	return report, err
}

// DropPolicies removes the operator's policies from the table. Row-level security stays on
// (forced), so the table fails closed, unless disableRLS. A table in a reserved schema is left
// as it is: EnsurePolicies never put policies there, and its row-level security is not ours to
// turn off.
func (p *Postgres) DropPolicies(ctx context.Context, t TenantTable, disableRLS bool) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		table := pgx.Identifier{t.Schema, t.Table}.Sanitize()
		var reserved bool
		err := tx.QueryRow(ctx, `SELECT `+reservedSchemaSQL+` FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		                         WHERE c.oid = to_regclass($1)`, table).Scan(&reserved)
		if errors.Is(err, pgx.ErrNoRows) || reserved {
			return nil // no table, or not ours to change
		}
		if err != nil {
			return err
		}
		for _, command := range Commands {
			if _, err := tx.Exec(ctx, "DROP POLICY IF EXISTS "+pgx.Identifier{PolicyName(command)}.Sanitize()+" ON "+table); err != nil {
				return fmt.Errorf("dropping policy %s: %w", PolicyName(command), err)
			}
		}
		if disableRLS {
			if _, err := tx.Exec(ctx, "ALTER TABLE "+table+" NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY"); err != nil {
				return fmt.Errorf("disabling row-level security: %w", err)
			}
		}
		return nil
	})
}

// policyExpressions are the USING and WITH CHECK expressions of the policy for command. The
// context functions are wrapped in (SELECT …) so that PostgreSQL runs them once per statement;
// without a project column the whole check is one such call (current_org_id_with_role).
func policyExpressions(t TenantTable, command string) (using, check string) {
	org := pgx.Identifier{t.OrganizationColumn}.Sanitize()
	role := quoteLiteral(t.Access[command]) + "::tenancy.role"
	predicate := org + " = (SELECT tenancy.current_org_id_with_role(" + role + "))"
	if t.ProjectColumn != "" {
		project := pgx.Identifier{t.ProjectColumn}.Sanitize()
		predicate = org + " = (SELECT tenancy.current_org_id())" +
			" AND ((SELECT tenancy.current_project_id()) IS NULL OR " + project + " = (SELECT tenancy.current_project_id()))" +
			" AND tenancy.has_role(" + org + ", " + project + ", " + role + ")"
	}
	switch command {
	case "INSERT":
		return "", predicate
	case "UPDATE":
		return predicate, predicate // neither read nor move a row out of reach
	}
	return predicate, ""
}

const policyDefinitionSQL = `
	SELECT concat_ws(' | ', p.cmd, p.permissive, array_to_string(p.roles, ','), coalesce(p.qual, ''), coalesce(p.with_check, ''))
	FROM pg_policies p WHERE p.schemaname = $1 AND p.tablename = $2 AND p.policyname = $3`

// tableState is what the catalog says about the table.
type tableState struct {
	rlsEnabled, rlsForced bool
	owner                 string
	ownerBypassesRLS      bool
	orgColumnIndexed      bool
	bypassRoles           []string
	policies              map[string]policyState
}

type policyState struct {
	definition string
	comment    string
}

// recordedDefinition is the definition hash the comment recorded.
func (p policyState) recordedDefinition() string {
	if _, hash, ok := strings.Cut(p.comment, "; definition "); ok {
		return hash
	}
	return ""
}

func inspectTable(ctx context.Context, tx pgx.Tx, t TenantTable) (tableState, error) {
	s := tableState{policies: map[string]policyState{}}
	var oid uint32
	var reserved bool
	// The catalog's own word on the table's schema as well, in case a caller skipped the check
	// on the name.
	err := tx.QueryRow(ctx, `
		SELECT c.oid, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner), r.rolbypassrls AND NOT r.rolsuper,
		       `+reservedSchemaSQL+`
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, t.Schema, t.Table).Scan(&oid, &s.rlsEnabled, &s.rlsForced, &s.owner, &s.ownerBypassesRLS, &reserved)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, &TableMissingError{Reason: "TableNotFound", Message: fmt.Sprintf("table %s.%s does not exist", t.Schema, t.Table)}
	}
	if err != nil {
		return s, fmt.Errorf("inspecting table %s.%s: %w", t.Schema, t.Table, err)
	}
	if reserved {
		return s, &ReservedSchemaError{Schema: t.Schema, Table: t.Table}
	}
	for _, column := range []string{t.OrganizationColumn, t.ProjectColumn} {
		if column == "" {
			continue
		}
		var typ string
		err := tx.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped`,
			oid, column).Scan(&typ)
		if errors.Is(err, pgx.ErrNoRows) {
			return s, &TableMissingError{Reason: "ColumnNotFound", Message: fmt.Sprintf("table %s.%s has no column %s", t.Schema, t.Table, column)}
		}
		if err != nil {
			return s, err
		}
		if typ != "uuid" {
			return s, &TableMissingError{Reason: "ColumnNotUUID", Message: fmt.Sprintf("column %s of %s.%s is %s, not uuid", column, t.Schema, t.Table, typ)}
		}
	}
	if err := tx.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		               WHERE i.indrelid = $1 AND a.attname = $2)`, oid, t.OrganizationColumn).Scan(&s.orgColumnIndexed); err != nil {
		return s, err
	}
	rows, err := tx.Query(ctx, `SELECT rolname FROM pg_roles WHERE rolbypassrls AND NOT rolsuper AND rolname <> current_user ORDER BY rolname`)
	if err != nil {
		return s, err
	}
	if s.bypassRoles, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return s, err
	}
	rows, err = tx.Query(ctx, `
		SELECT p.policyname,
		       concat_ws(' | ', p.cmd, p.permissive, array_to_string(p.roles, ','), coalesce(p.qual, ''), coalesce(p.with_check, '')),
		       coalesce(obj_description(pol.oid, 'pg_policy'), '')
		FROM pg_policies p JOIN pg_policy pol ON pol.polname = p.policyname AND pol.polrelid = $3
		WHERE p.schemaname = $1 AND p.tablename = $2`, t.Schema, t.Table, oid)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var name, definition, comment string
		if err := rows.Scan(&name, &definition, &comment); err != nil {
			return s, err
		}
		s.policies[name] = policyState{definition: shortHash(definition), comment: comment}
	}
	return s, rows.Err()
}

// warnings are what weakens isolation that the operator cannot fix.
func (s tableState) warnings(t TenantTable) []string {
	var w []string
	if s.ownerBypassesRLS {
		w = append(w, fmt.Sprintf("the table's owner %s has BYPASSRLS: applications must not connect as it", s.owner))
	}
	for _, role := range s.bypassRoles {
		w = append(w, fmt.Sprintf("role %s has BYPASSRLS and sees every organization's rows", role))
	}
	if !s.orgColumnIndexed {
		w = append(w, fmt.Sprintf("column %s has no index that starts with it: tenant-scoped queries scan the table", t.OrganizationColumn))
	}
	return w
}

func commentFor(resource, specHash string) string {
	return fmt.Sprintf("%s (TenantTable %s); spec %s", policyMarker, resource, specHash)
}

func fingerprint(parts ...string) string { return shortHash(strings.Join(parts, "\x00")) }

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// PurgeOrganizationData deletes the rows of the organization with uid from every table (an
// Organization with deletionPolicy Delete, before its own row goes). Tables or columns that are
// missing, and tables in reserved schemas, are skipped. It is idempotent and audited.
func (p *Postgres) PurgeOrganizationData(ctx context.Context, uid, name string, tables []TenantTable, actor Actor) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var orgID string
		err := tx.QueryRow(ctx, "SELECT id FROM tenancy.organizations WHERE uid = $1", uid).Scan(&orgID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // already gone with its data
		}
		if err != nil {
			return err
		}
		purged := map[string]any{}
		for _, t := range tables {
			if _, err := inspectTable(ctx, tx, t); err != nil {
				var missing *TableMissingError
				var reserved *ReservedSchemaError // never an organization's data
				if errors.As(err, &missing) || errors.As(err, &reserved) {
					continue
				}
				return err
			}
			tag, err := tx.Exec(ctx, "DELETE FROM "+pgx.Identifier{t.Schema, t.Table}.Sanitize()+" WHERE "+
				pgx.Identifier{t.OrganizationColumn}.Sanitize()+" = $1", orgID)
			if err != nil {
				return fmt.Errorf("purging %s.%s: %w", t.Schema, t.Table, err)
			}
			purged[t.Schema+"."+t.Table] = tag.RowsAffected()
		}
		return insertAudit(ctx, tx, actor, "organization.data-purged", "organization/"+name, orgID, purged)
	})
}
