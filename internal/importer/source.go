package importer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The rows read from the old system. Ids are kept as text, whatever their type there.
type (
	sourceOrganization struct{ ID, Name, DisplayName, Tier string }
	sourceProject      struct{ ID, Organization, Name, DisplayName string }
	sourceUser         struct {
		ID, Email, DisplayName string
		PasswordHash           string
		Verified               bool
		CreatedAt              *time.Time
	}
	sourceMembership struct{ Scope, User, Role string }
	sourceAPIKey     struct {
		ID, Organization, Project, Name, Role, Hash string
		ExpiresAt, RevokedAt                        *time.Time
	}
	sourceAuditRow struct {
		ID, Organization, Actor, Action, Target string
		Details                                 map[string]any
		At                                      time.Time
	}
)

// sourceData is everything the import reads from the old system.
type sourceData struct {
	Organizations           []sourceOrganization
	Projects                []sourceProject
	Users                   []sourceUser
	OrganizationMemberships []sourceMembership
	ProjectMemberships      []sourceMembership
	APIKeys                 []sourceAPIKey
	AuditRows               []sourceAuditRow
	Tables                  []sourceTable
}

// sourceTable is one of the application's own tables, with what its rows would need for RLS.
type sourceTable struct {
	Name string
	// OrganizationColumn and ProjectColumn are set when the table has those columns as uuid.
	OrganizationColumn, ProjectColumn string
	// WrongType names the organization column's type when it exists but is not uuid.
	WrongType string
	// Parent is a table with the organization column that a foreign key of this one leads to.
	Parent *foreignKey
	// Policies are the row-level security policies the table has already.
	Policies []string
	RLS      bool
	Rows     int64
}

// foreignKey is a single-column foreign key from a table to a parent table.
type foreignKey struct{ Column, ParentTable, ParentColumn string }

// reader reads the old schema through one connection, quoting every name it was given.
type reader struct {
	conn    *pgx.Conn
	m       Mapping
	columns map[string]map[string]string // table → column → data type
}

func readSource(ctx context.Context, conn *pgx.Conn, m Mapping) (*sourceData, error) {
	r := &reader{conn: conn, m: m}
	if err := r.loadColumns(ctx); err != nil {
		return nil, err
	}
	if err := r.checkMapping(); err != nil {
		return nil, err
	}
	var d sourceData
	steps := []func(context.Context, *sourceData) error{
		r.organizations, r.projects, r.users, r.memberships, r.apiKeys, r.auditRows, r.domainTables,
	}
	for _, step := range steps {
		if err := step(ctx, &d); err != nil {
			return nil, err
		}
	}
	return &d, nil
}

func (r *reader) loadColumns(ctx context.Context) error {
	rows, err := r.conn.Query(ctx, `
		SELECT c.table_name::text, c.column_name::text, c.udt_name::text
		FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'`, r.m.Schema)
	if err != nil {
		return fmt.Errorf("reading the columns of schema %s: %w", r.m.Schema, err)
	}
	r.columns = map[string]map[string]string{}
	var table, column, typ string
	_, err = pgx.ForEachRow(rows, []any{&table, &column, &typ}, func() error {
		if r.columns[table] == nil {
			r.columns[table] = map[string]string{}
		}
		r.columns[table][column] = typ
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the columns of schema %s: %w", r.m.Schema, err)
	}
	if len(r.columns) == 0 {
		return fmt.Errorf("schema %s has no tables (or this login may not see them)", r.m.Schema)
	}
	return nil
}

// checkMapping says, for every table and column the mapping names, whether the source has it.
func (r *reader) checkMapping() error {
	var missing []string
	check := func(key, table string, cols map[string]string) {
		if table == "" {
			return
		}
		have, ok := r.columns[table]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s.table: no table %s.%s", key, r.m.Schema, table))
			return
		}
		for field, col := range cols {
			if _, ok := have[col]; col != "" && !ok {
				missing = append(missing, fmt.Sprintf("%s.%s: no column %s in %s.%s", key, field, col, r.m.Schema, table))
			}
		}
	}
	o, p, u, om, pm, k, a := r.m.Organizations, r.m.Projects, r.m.Users, r.m.OrganizationMemberships, r.m.ProjectMemberships, r.m.APIKeys, r.m.AuditLogs
	check("organizations", o.Table, map[string]string{"id": o.ID, "name": o.Name, "displayName": o.DisplayName, "tier": o.Tier})
	check("projects", p.Table, map[string]string{"id": p.ID, "organization": p.Organization, "name": p.Name, "displayName": p.DisplayName})
	check("users", u.Table, map[string]string{"id": u.ID, "email": u.Email, "displayName": u.DisplayName, "passwordHash": u.PasswordHash, "emailVerified": u.EmailVerified, "createdAt": u.CreatedAt})
	check("organizationMemberships", om.Table, map[string]string{"scope": om.Scope, "user": om.User, "role": om.Role})
	check("projectMemberships", pm.Table, map[string]string{"scope": pm.Scope, "user": pm.User, "role": pm.Role})
	check("apiKeys", k.Table, map[string]string{"id": k.ID, "organization": k.Organization, "project": k.Project, "name": k.Name, "role": k.Role, "hash": k.Hash, "expiresAt": k.ExpiresAt, "revokedAt": k.RevokedAt})
	check("auditLogs", a.Table, map[string]string{"id": a.ID, "organization": a.Organization, "actor": a.Actor, "action": a.Action, "target": a.Target, "details": a.Details, "at": a.At})
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("the mapping names what the source does not have (fix the mapping file):\n  %s", strings.Join(missing, "\n  "))
	}
	return nil
}

// text is a column read as text; an unmapped column reads as ”.
func (r *reader) text(col string) string {
	if col == "" {
		return "''"
	}
	return "coalesce(" + pgx.Identifier{col}.Sanitize() + "::text, '')"
}

// time is a column read as timestamptz (NULL when unmapped).
func (r *reader) time(col string) string {
	if col == "" {
		return "NULL::timestamptz"
	}
	return pgx.Identifier{col}.Sanitize() + "::timestamptz"
}

func (r *reader) from(table string) string {
	return " FROM " + pgx.Identifier{r.m.Schema, table}.Sanitize()
}

// query runs SELECT exprs FROM table ORDER BY 1 (so that reports and files come out in the same
// order each time) and calls scan for each row.
func (r *reader) query(ctx context.Context, table string, exprs []string, dest []any, each func() error) error {
	sql := "SELECT " + strings.Join(exprs, ", ") + r.from(table) + " ORDER BY 1"
	rows, err := r.conn.Query(ctx, sql)
	if err != nil {
		return fmt.Errorf("reading %s.%s: %w", r.m.Schema, table, err)
	}
	if _, err := pgx.ForEachRow(rows, dest, each); err != nil {
		return fmt.Errorf("reading %s.%s: %w", r.m.Schema, table, err)
	}
	return nil
}

func (r *reader) organizations(ctx context.Context, d *sourceData) error {
	m := r.m.Organizations
	var o sourceOrganization
	return r.query(ctx, m.Table, []string{r.text(m.ID), r.text(m.Name), r.text(m.DisplayName), r.text(m.Tier)},
		[]any{&o.ID, &o.Name, &o.DisplayName, &o.Tier}, func() error {
			d.Organizations = append(d.Organizations, o)
			return nil
		})
}

func (r *reader) projects(ctx context.Context, d *sourceData) error {
	m := r.m.Projects
	if m.Table == "" {
		return nil
	}
	var p sourceProject
	return r.query(ctx, m.Table, []string{r.text(m.ID), r.text(m.Organization), r.text(m.Name), r.text(m.DisplayName)},
		[]any{&p.ID, &p.Organization, &p.Name, &p.DisplayName}, func() error {
			d.Projects = append(d.Projects, p)
			return nil
		})
}

func (r *reader) users(ctx context.Context, d *sourceData) error {
	m := r.m.Users
	// true, or any time, is verified; false, NULL and '' are not.
	verified := "true"
	if m.EmailVerified != "" {
		verified = "coalesce(" + pgx.Identifier{m.EmailVerified}.Sanitize() + "::text, '') NOT IN ('', 'false', 'f')"
	}
	var u sourceUser
	return r.query(ctx, m.Table,
		[]string{r.text(m.ID), r.text(m.Email), r.text(m.DisplayName), r.text(m.PasswordHash), verified, r.time(m.CreatedAt)},
		[]any{&u.ID, &u.Email, &u.DisplayName, &u.PasswordHash, &u.Verified, &u.CreatedAt}, func() error {
			d.Users = append(d.Users, u)
			return nil
		})
}

func (r *reader) memberships(ctx context.Context, d *sourceData) error {
	for _, t := range []struct {
		m    MembershipsMapping
		into *[]sourceMembership
	}{{r.m.OrganizationMemberships, &d.OrganizationMemberships}, {r.m.ProjectMemberships, &d.ProjectMemberships}} {
		if t.m.Table == "" {
			continue
		}
		var row sourceMembership
		err := r.query(ctx, t.m.Table, []string{r.text(t.m.Scope), r.text(t.m.User), r.text(t.m.Role)},
			[]any{&row.Scope, &row.User, &row.Role}, func() error {
				*t.into = append(*t.into, row)
				return nil
			})
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) apiKeys(ctx context.Context, d *sourceData) error {
	m := r.m.APIKeys
	if m.Table == "" {
		return nil
	}
	hash := r.text(m.Hash)
	if m.HashEncoding == "bytea" && m.Hash != "" {
		hash = "coalesce(encode(" + pgx.Identifier{m.Hash}.Sanitize() + ", 'hex'), '')"
	}
	var k sourceAPIKey
	return r.query(ctx, m.Table,
		[]string{r.text(m.ID), r.text(m.Organization), r.text(m.Project), r.text(m.Name), r.text(m.Role), hash, r.time(m.ExpiresAt), r.time(m.RevokedAt)},
		[]any{&k.ID, &k.Organization, &k.Project, &k.Name, &k.Role, &k.Hash, &k.ExpiresAt, &k.RevokedAt}, func() error {
			d.APIKeys = append(d.APIKeys, k)
			return nil
		})
}

func (r *reader) auditRows(ctx context.Context, d *sourceData) error {
	m := r.m.AuditLogs
	if m.Table == "" {
		return nil
	}
	var a sourceAuditRow
	var details string
	return r.query(ctx, m.Table,
		[]string{r.text(m.ID), r.text(m.Organization), r.text(m.Actor), r.text(m.Action), r.text(m.Target), r.text(m.Details), r.time(m.At)},
		[]any{&a.ID, &a.Organization, &a.Actor, &a.Action, &a.Target, &details, &a.At}, func() error {
			a.Details = map[string]any{}
			if details != "" {
				var v any
				if err := json.Unmarshal([]byte(details), &v); err != nil {
					a.Details["value"] = details
				} else if obj, ok := v.(map[string]any); ok {
					a.Details = obj
				} else {
					a.Details["value"] = v
				}
			}
			d.AuditRows = append(d.AuditRows, a)
			return nil
		})
}

// identityTables are the mapped tables: the rest of the schema is the application's.
func (r *reader) identityTables() []string {
	m := r.m
	return []string{m.Organizations.Table, m.Projects.Table, m.Users.Table, m.OrganizationMemberships.Table,
		m.ProjectMemberships.Table, m.APIKeys.Table, m.AuditLogs.Table}
}

func (r *reader) domainTables(ctx context.Context, d *sourceData) error {
	orgCol, projectCol := r.m.DomainTables.OrganizationColumn, r.m.DomainTables.ProjectColumn
	for table, cols := range r.columns {
		if slices.Contains(r.identityTables(), table) || slices.Contains(r.m.DomainTables.Exclude, table) {
			continue
		}
		t := sourceTable{Name: table}
		switch typ, ok := cols[orgCol]; {
		case ok && typ == "uuid":
			t.OrganizationColumn = orgCol
		case ok:
			t.WrongType = typ
		}
		if typ, ok := cols[projectCol]; ok && typ == "uuid" && projectCol != "" {
			t.ProjectColumn = projectCol
		}
		d.Tables = append(d.Tables, t)
	}
	slices.SortFunc(d.Tables, func(a, b sourceTable) int { return strings.Compare(a.Name, b.Name) })
	for i := range d.Tables {
		if err := r.describeTable(ctx, &d.Tables[i]); err != nil {
			return err
		}
	}
	return nil
}

// describeTable reads a domain table's size, its policies and, when it lacks the organization
// column, a foreign key to a table that has it (where a backfill can take the value from).
func (r *reader) describeTable(ctx context.Context, t *sourceTable) error {
	qualified := pgx.Identifier{r.m.Schema, t.Name}.Sanitize()
	err := r.conn.QueryRow(ctx, `
		SELECT c.relrowsecurity, greatest(c.reltuples, 0)::bigint,
		       coalesce((SELECT array_agg(p.polname::text ORDER BY p.polname) FROM pg_policy p WHERE p.polrelid = c.oid), '{}')
		FROM pg_class c WHERE c.oid = $1::regclass`, qualified).Scan(&t.RLS, &t.Rows, &t.Policies)
	if err != nil {
		return fmt.Errorf("describing %s: %w", qualified, err)
	}
	if t.OrganizationColumn != "" {
		return nil
	}
	rows, err := r.conn.Query(ctx, `
		SELECT a.attname::text, pc.relname::text, pa.attname::text
		FROM pg_constraint k
		JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
		JOIN pg_class pc ON pc.oid = k.confrelid
		JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = k.confkey[1]
		WHERE k.contype = 'f' AND k.conrelid = $1::regclass AND cardinality(k.conkey) = 1
		  AND pc.relnamespace = $2::regnamespace
		ORDER BY k.conname`, qualified, pgx.Identifier{r.m.Schema}.Sanitize())
	if err != nil {
		return fmt.Errorf("reading the foreign keys of %s: %w", qualified, err)
	}
	var fk foreignKey
	_, err = pgx.ForEachRow(rows, []any{&fk.Column, &fk.ParentTable, &fk.ParentColumn}, func() error {
		if t.Parent == nil && r.columns[fk.ParentTable][r.m.DomainTables.OrganizationColumn] == "uuid" &&
			scriptSafe(fk.Column) && scriptSafe(fk.ParentTable) && scriptSafe(fk.ParentColumn) {
			parent := fk
			t.Parent = &parent
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the foreign keys of %s: %w", qualified, err)
	}
	return nil
}
