package authd

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// auditEntry is one row of tenancy.audit_log.
type auditEntry struct {
	Actor       string
	ActorUserID *string
	ActorKeyID  *string
	Action      string
	Target      string
	OrgID       *string
	RequestID   string
	Details     map[string]any
}

// audit inserts entries in one statement batch.
func (s *Store) audit(ctx context.Context, entries []auditEntry) error {
	batch := &pgx.Batch{}
	for _, e := range entries {
		details := map[string]any{}
		for k, v := range e.Details {
			if text, ok := v.(string); ok {
				v = printable(text)
			}
			details[k] = v
		}
		batch.Queue(`INSERT INTO tenancy.audit_log (actor, actor_user_id, actor_api_key_id, action, target, organization_id, request_id, details)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, printable(e.Actor), e.ActorUserID, e.ActorKeyID, e.Action, printable(e.Target),
			e.OrgID, printable(e.RequestID), details)
	}
	return s.pool.SendBatch(ctx, batch).Close()
}

// printable makes a client-supplied string storable: valid UTF-8 without NUL (which PostgreSQL
// refuses in text and jsonb), at most 256 bytes.
func printable(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "?"), "\x00", "?")
	return truncate(s, 256)
}

// auditRecord is one row of an organization's audit log.
type auditRecord struct {
	ID        int64          `json:"id"`
	At        time.Time      `json:"at"`
	Actor     string         `json:"actor"`
	Action    string         `json:"action"`
	Target    string         `json:"target"`
	RequestID string         `json:"requestID,omitempty"`
	Details   map[string]any `json:"details,omitempty"`
}

// auditLog reads an organization's audit rows, newest first: limit rows with an id below before
// (0: from the newest).
func (s *Store) auditLog(ctx context.Context, orgID string, before int64, limit int) ([]auditRecord, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, at, actor, action, target, request_id, details FROM tenancy.audit_log
		WHERE organization_id = $1 AND ($2::bigint = 0 OR id < $2::bigint)
		ORDER BY id DESC LIMIT $3`, orgID, before, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (auditRecord, error) {
		var a auditRecord
		err := row.Scan(&a.ID, &a.At, &a.Actor, &a.Action, &a.Target, &a.RequestID, &a.Details)
		a.At = a.At.UTC()
		return a, err
	})
}
