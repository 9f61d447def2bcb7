package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// batchSize is how many rows go in one transaction: an interrupted import keeps what it committed
// and the next run goes on from there.
const batchSize = 200

// Counts says, for one kind, what an import did.
type Counts struct {
	Created, Updated, Unchanged, Waiting int
}

// rowWriter writes the plan's rows into Tenancy's database, each batch in its own transaction.
type rowWriter struct {
	conn     *pgx.Conn
	actor    string
	keyTable string // the old system's API key table, for the report
	progress func(kind string, done, total int)
}

// insertUserSQL inserts the user with the old id (another id when that one is taken), once: an
// address that has an account already is never touched (its holder may not be the person the old
// system knew: the import would hand them the organization), and a user the ledger says an
// earlier run imported is not imported again (an erased account stays erased). The final SELECT
// reads the snapshot from before the insert.
const insertUserSQL = `
WITH known AS (
    SELECT 1 FROM tenancy.import_ledger WHERE source = $8 AND kind = 'users' AND key = $9
), inserted AS (
    INSERT INTO tenancy.users (id, email, display_name, password_hash, password_changed_at, email_verified_at, created_at)
    SELECT CASE WHEN EXISTS (SELECT 1 FROM tenancy.users WHERE id = $1) THEN gen_random_uuid() ELSE $1 END,
           $2, $3, $4, CASE WHEN $4::text IS NOT NULL THEN now() END, CASE WHEN $5::boolean THEN now() END,
           coalesce($6, now())
    WHERE NOT EXISTS (SELECT 1 FROM known)
    ON CONFLICT (email) DO NOTHING
    RETURNING id, email_verified_at IS NOT NULL AS verified
), recorded AS (
    INSERT INTO tenancy.import_ledger (source, kind, key) SELECT $8, 'users', $9 FROM inserted
), audit AS (
    INSERT INTO tenancy.audit_log (actor, action, target, details)
    SELECT $7, 'user.imported', 'user/' || $2::text,
           jsonb_build_object('source', $8::text, 'sourceID', $9::text, 'password', $4::text IS NOT NULL,
                              'emailVerified', verified)
    FROM inserted
)
SELECT EXISTS (SELECT 1 FROM inserted), EXISTS (SELECT 1 FROM known),
       EXISTS (SELECT 1 FROM tenancy.users WHERE email = $2)`

func (w *rowWriter) users(ctx context.Context, users []User, source, table string) (Counts, []Problem, []Problem, error) {
	var c Counts
	var problems, notes []Problem
	err := w.batches(ctx, kindUsers, len(users), func(tx pgx.Tx, i int) error {
		u := users[i]
		var hash *string
		if u.PasswordHash != "" {
			hash = &u.PasswordHash
		}
		var inserted, known, exists bool
		if err := tx.QueryRow(ctx, insertUserSQL, u.ID, u.Email, u.DisplayName, hash, u.Verified, u.CreatedAt,
			w.actor, source, u.SourceID).Scan(&inserted, &known, &exists); err != nil {
			return fmt.Errorf("user %s: %w", u.Email, err)
		}
		row := fmt.Sprintf("%s id=%s", table, u.SourceID)
		switch {
		case inserted:
			c.Created++
		case known && exists:
			c.Unchanged++
		case known:
			notes = append(notes, Problem{Row: row, Message: fmt.Sprintf("%s was imported by an earlier run and deleted in Tenancy since; not imported again", u.Email)})
		default:
			problems = append(problems, Problem{Row: row, Message: fmt.Sprintf(
				"%s has a Tenancy account already, which this import did not make: it keeps its own password and verification, and its memberships wait for its holder to accept an invitation unless that address is verified",
				u.Email)})
		}
		return nil
	})
	return c, problems, notes, err
}

// insertOldKeySQL writes an old key once its organization (and project) has its row; until then
// it writes nothing and the key waits for the next run.
const insertOldKeySQL = `
WITH inserted AS (
    INSERT INTO tenancy.api_keys (uid, name, organization_id, project_id, key_id, prefix, hash, role,
                                  superseded_at, expires_at, imported_at)
    SELECT $1, $2, o.id, $3, $4, $4, $5, $6, now(), $7, now()
    FROM tenancy.organizations o
    WHERE o.id = $8 AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM tenancy.projects p WHERE p.id = $3 AND p.organization_id = o.id))
    ON CONFLICT DO NOTHING
    RETURNING id, organization_id
), audit AS (
    INSERT INTO tenancy.audit_log (actor, action, target, organization_id, details)
    SELECT $9, 'apikey.imported', 'apikey/' || $2::text, organization_id,
           jsonb_build_object('keyID', $4::text, 'role', $6::text, 'expiresAt', $7::timestamptz, 'source', $10::text)
    FROM inserted
)
SELECT count(*) FROM inserted`

// oldKeyState tells why an old key was not inserted.
const oldKeyStateSQL = `
SELECT EXISTS (SELECT 1 FROM tenancy.api_keys WHERE key_id = $1),
       EXISTS (SELECT 1 FROM tenancy.api_keys WHERE hash = $2)`

// oldKeys writes the old keys whose hash is usable, each under the uid of the live APIKey that
// replaces it (apiKey answers it), so that the old key is that APIKey's from the start: revoked
// with it, lowered with it, and never above its role now. A key whose APIKey is not there (yet)
// waits for a later run.
func (w *rowWriter) oldKeys(ctx context.Context, plan *Plan, source string, apiKey func(org *Organization, key APIKey) (liveAPIKey, bool)) (Counts, []Problem, error) {
	type item struct {
		org *Organization
		key APIKey
	}
	var items []item
	for _, org := range plan.Organizations {
		for _, k := range org.APIKeys {
			if k.OldKeyHash != nil {
				items = append(items, item{org, k})
			}
		}
	}
	var c Counts
	var problems []Problem
	err := w.batches(ctx, "old API keys", len(items), func(tx pgx.Tx, i int) error {
		org, k := items[i].org, items[i].key
		var project *string
		if k.ProjectRowID != "" {
			project = &k.ProjectRowID
		}
		owner, ok := apiKey(org, k)
		if !ok {
			var known bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenancy.api_keys WHERE key_id = $1)`, k.OldKeyID).Scan(&known); err != nil {
				return fmt.Errorf("old API key %s: %w", k.OldKeyID, err)
			}
			if known {
				c.Unchanged++
			} else {
				c.Waiting++
			}
			return nil
		}
		var n int
		expires := k.OldKeyExpires
		if owner.ExpiresAt != nil && owner.ExpiresAt.Before(expires) {
			expires = *owner.ExpiresAt
		}
		if err := tx.QueryRow(ctx, insertOldKeySQL, owner.UID, k.Name, project, k.OldKeyID, k.OldKeyHash, lowerRole(k.Role, owner.Role),
			expires, org.RowID, w.actor, source).Scan(&n); err != nil {
			return fmt.Errorf("old API key %s: %w", k.OldKeyID, err)
		}
		if n == 1 {
			c.Created++
			return nil
		}
		var known, hashTaken bool
		if err := tx.QueryRow(ctx, oldKeyStateSQL, k.OldKeyID, k.OldKeyHash).Scan(&known, &hashTaken); err != nil {
			return fmt.Errorf("old API key %s: %w", k.OldKeyID, err)
		}
		switch {
		case known:
			c.Unchanged++
		case hashTaken:
			problems = append(problems, Problem{Row: fmt.Sprintf("%s id=%s", w.keyTable, k.SourceID),
				Message: "another key has the same hash already; the old key is not imported twice"})
		default:
			c.Waiting++
		}
		return nil
	})
	return c, problems, err
}

// insertAuditSQL writes old audit rows; a row's actor_user_id is the person's only when an import
// of this source created that account (the ledger), never an account someone else registered
// under the address, who could then read the rows in their account's export.
const insertAuditSQL = `
INSERT INTO tenancy.audit_log (at, actor, actor_user_id, action, target, organization_id, details)
SELECT r.at, r.actor, u.id, r.action, r.target, r.organization_id, r.details
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::jsonb[], $7::text[])
     AS r (at, actor, action, target, organization_id, details, actor_source_id)
LEFT JOIN tenancy.import_ledger l ON l.source = $8 AND l.kind = 'users' AND l.key = r.actor_source_id
LEFT JOIN tenancy.users u ON u.email = r.actor AND l.key IS NOT NULL
ON CONFLICT ((details ->> 'importID')) WHERE details ? 'importID' DO NOTHING`

// auditRows writes the old audit rows with their times and actors, each once.
func (w *rowWriter) auditRows(ctx context.Context, rows []AuditRow, source string) (Counts, error) {
	var c Counts
	for start := 0; start < len(rows); start += batchSize {
		end := min(start+batchSize, len(rows))
		cols := struct {
			at                    []time.Time
			actor, action, target []string
			actorSourceID         []string
			organization, details []*string
		}{}
		for _, r := range rows[start:end] {
			details, err := json.Marshal(r.Details)
			if err != nil {
				return c, fmt.Errorf("audit row %s: %w", r.ImportID, err)
			}
			d := string(details)
			cols.at = append(cols.at, r.At)
			cols.actor = append(cols.actor, r.Actor)
			cols.actorSourceID = append(cols.actorSourceID, r.ActorSourceID)
			cols.action = append(cols.action, r.Action)
			cols.target = append(cols.target, r.Target)
			cols.details = append(cols.details, &d)
			var org *string
			if r.OrganizationID != "" {
				id := r.OrganizationID
				org = &id
			}
			cols.organization = append(cols.organization, org)
		}
		tag, err := w.conn.Exec(ctx, insertAuditSQL, cols.at, cols.actor, cols.action, cols.target, cols.organization, cols.details,
			cols.actorSourceID, source)
		if err != nil {
			return c, fmt.Errorf("audit rows %s…: %w", rows[start].ImportID, err)
		}
		c.Created += int(tag.RowsAffected())
		c.Unchanged += end - start - int(tag.RowsAffected())
		w.progress("audit rows", end, len(rows))
	}
	return c, nil
}

// batches runs write for items 0…total-1, batchSize per transaction, reporting progress.
func (w *rowWriter) batches(ctx context.Context, kind string, total int, write func(tx pgx.Tx, i int) error) error {
	for start := 0; start < total; start += batchSize {
		end := min(start+batchSize, total)
		err := pgx.BeginFunc(ctx, w.conn, func(tx pgx.Tx) error {
			for i := start; i < end; i++ {
				if err := write(tx, i); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
				return fmt.Errorf("writing %s: %w (is the database migrated? the manager migrates it at start)", kind, err)
			}
			return fmt.Errorf("writing %s: %w", kind, err)
		}
		w.progress(kind, end, total)
	}
	return nil
}

// lowerRole is the lower of two roles; an empty one does not count.
func lowerRole(a, b string) string {
	if b != "" && tenancyv1.Role(a).AtLeast(tenancyv1.Role(b)) {
		return b
	}
	return a
}
