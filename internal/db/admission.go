package db

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// OwnerRemovalWindow is how long an admitted removal or demotion of an Owner keeps counting as
// done: longer than any replica's cache takes to show it, short enough that a removal the API
// server then failed to store stops blocking the next one soon.
const OwnerRemovalWindow = 30 * time.Second

// QuotaAdmissionWindow is how long an admitted creation counts towards its organization's quota
// while a replica's cache does not show it: longer than any replica's cache takes to show a new
// object, short enough that a creation the API server then failed to store frees its slot soon.
const QuotaAdmissionWindow = 30 * time.Second

// deletionRecordRetention is how long a deletion stays attributable: a finalizer that waits for
// a database outage still finds who asked.
const deletionRecordRetention = 7 * 24 * time.Hour

// AdmissionRecord is a change the validating webhook admitted.
type AdmissionRecord struct {
	// ObjectUID is the changed object's metadata.uid.
	ObjectUID string
	// Namespace is the object's organization namespace ("" for cluster-scoped objects): Owner
	// removals are serialized per namespace, where the Owner Memberships live.
	Namespace string
	// Target names the object in audit_log style, for example membership/acme/alice.
	Target string
	// RequestedBy is the requesting user's Kubernetes username.
	RequestedBy string
	// Deletion is true for an admitted deletion.
	Deletion bool
}

// OwnerRemoval asks to admit the deletion or demotion of an organization-wide Owner Membership.
type OwnerRemoval struct {
	AdmissionRecord
	// Owners are the UIDs of the organization's Owner Memberships, as the asking replica's cache
	// shows them (without those already being deleted); the candidate is one of them.
	Owners []string
	// DryRun evaluates without recording: a dry-run request gets the same answer and leaves
	// nothing behind.
	DryRun bool
}

// QuotaAdmission asks to admit the creation of one more of what a tier quota limits.
type QuotaAdmission struct {
	// Namespace is the organization's namespace: admissions are serialized per namespace.
	Namespace string
	// Quota names what the quota limits, such as "projects".
	Quota string
	// Key is what the quota counts once: a project's or API key's name, a member's email.
	Key string
	// ObjectUID is the new object's metadata.uid: the admitted deletion of that object ends its
	// record at once.
	ObjectUID string
	// Limit is the quota; above 0.
	Limit int
	// DryRun evaluates without recording.
	DryRun bool
}

// AdmitQuota decides, serialized per organization namespace across every replica, whether the
// creation q fits its quota. cache is the asking replica's cache: given the keys of the other
// creations of the quota admitted in the last QuotaAdmissionWindow, it returns how many objects
// the cache shows and which of those keys among them. Every admitted key it does not show counts
// too (one admitted after the keys were read counts even if the cache shows it: that can only
// refuse, never admit, one too many). When that leaves room (and q is no dry run), AdmitQuota
// records q and returns true. used is that count, without q. Two round trips, the second under
// the namespace's lock (tenancy.admit_quota).
func (p *Postgres) AdmitQuota(ctx context.Context, q QuotaAdmission, cache func(admitted []string) (count int, shown []string, err error)) (used int, admitted bool, err error) {
	if err := p.ensureMigrated(); err != nil {
		return 0, false, err
	}
	rows, err := p.pool.Query(ctx, `
		SELECT key FROM tenancy.quota_admissions
		WHERE namespace = $1 AND quota = $2 AND key <> $3 AND admitted_at > now() - make_interval(secs => $4)`,
		q.Namespace, q.Quota, q.Key, QuotaAdmissionWindow.Seconds())
	if err != nil {
		return 0, false, fmt.Errorf("reading the admitted %s of %s: %w", q.Quota, q.Namespace, err)
	}
	others, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, false, fmt.Errorf("reading the admitted %s of %s: %w", q.Quota, q.Namespace, err)
	}
	count, shown, err := cache(others)
	if err != nil {
		return 0, false, err
	}
	if shown == nil {
		shown = []string{}
	}
	err = p.pool.QueryRow(ctx, "SELECT used, admitted FROM tenancy.admit_quota($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		q.Namespace, q.Quota, q.Key, q.ObjectUID, q.Limit, count, shown, q.DryRun, QuotaAdmissionWindow.Seconds()).Scan(&used, &admitted)
	if err != nil {
		return 0, false, fmt.Errorf("admitting one more of the %s of %s: %w", q.Quota, q.Namespace, err)
	}
	return used, admitted, nil
}

// AdmitOwnerRemoval decides, serialized per organization namespace across every replica, whether r leaves
// the organization at least one Owner, counting the removals admitted in the last
// OwnerRemovalWindow as done. When it does (and r is no dry run) it records r and returns true.
func (p *Postgres) AdmitOwnerRemoval(ctx context.Context, r OwnerRemoval) (bool, error) {
	if err := p.ensureMigrated(); err != nil {
		return false, err
	}
	admitted := false
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		// A transaction-scoped advisory lock works before the organization has a row, and is
		// released with the transaction.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('tenancy.owners/' || $1, 0))", r.Namespace); err != nil {
			return fmt.Errorf("locking the owners in %s: %w", r.Namespace, err)
		}
		rows, err := tx.Query(ctx, `
			SELECT object_uid::text FROM tenancy.admission_records
			WHERE namespace = $1 AND owner_removal AND admitted_at > now() - make_interval(secs => $2)`,
			r.Namespace, OwnerRemovalWindow.Seconds())
		if err != nil {
			return err
		}
		removed, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("reading admitted owner removals: %w", err)
		}
		// An Owner whose account is being deleted is about to go too (db.EraseAccount).
		rows, err = tx.Query(ctx, `
			SELECT m.uid::text FROM tenancy.memberships m JOIN tenancy.users u ON u.id = m.user_id
			WHERE m.uid::text = ANY($1) AND u.deletion_requested_at IS NOT NULL`, r.Owners)
		if err != nil {
			return err
		}
		leaving, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("reading owners whose accounts are being deleted: %w", err)
		}
		removed = append(removed, leaving...)
		admitted = slices.ContainsFunc(r.Owners, func(uid string) bool {
			return uid != r.ObjectUID && !slices.Contains(removed, uid)
		})
		if !admitted || r.DryRun {
			return nil
		}
		return insertAdmissionRecord(ctx, tx, r.AdmissionRecord, true)
	})
	if err != nil {
		return false, fmt.Errorf("admitting the removal of an owner in %s: %w", r.Namespace, err)
	}
	return admitted, nil
}

// RecordDeletion remembers who asked for a deletion, for the audit row its clean-up writes. The
// first request to delete an object is the one remembered.
func (p *Postgres) RecordDeletion(ctx context.Context, r AdmissionRecord) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	r.Deletion = true
	if err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		return insertAdmissionRecord(ctx, tx, r, false)
	}); err != nil {
		return fmt.Errorf("recording the deletion of %s: %w", r.Target, err)
	}
	return nil
}

// insertAdmissionRecord writes r, merged with an earlier record of the same object: an Owner
// removal stays one (with the time of the latest), a deletion keeps its first requester. An
// admitted deletion frees the object's quota slot at once. It prunes records nobody needs any
// more.
func insertAdmissionRecord(ctx context.Context, tx pgx.Tx, r AdmissionRecord, ownerRemoval bool) error {
	if _, err := tx.Exec(ctx, `
		INSERT INTO tenancy.admission_records AS a (object_uid, namespace, target, requested_by, deletion, owner_removal)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (object_uid) DO UPDATE SET
			requested_by = CASE WHEN a.deletion THEN a.requested_by ELSE excluded.requested_by END,
			deletion = a.deletion OR excluded.deletion,
			owner_removal = a.owner_removal OR excluded.owner_removal,
			admitted_at = CASE WHEN excluded.owner_removal THEN excluded.admitted_at ELSE a.admitted_at END`,
		r.ObjectUID, r.Namespace, r.Target, r.RequestedBy, r.Deletion, ownerRemoval); err != nil {
		return fmt.Errorf("recording the admission of %s: %w", r.Target, err)
	}
	if r.Deletion {
		// The object stops counting once its cache shows it being deleted; its admitted creation
		// must not count in its place.
		if _, err := tx.Exec(ctx, "DELETE FROM tenancy.quota_admissions WHERE object_uid = $1", r.ObjectUID); err != nil {
			return fmt.Errorf("freeing the quota slot of %s: %w", r.Target, err)
		}
	}
	if _, err := tx.Exec(ctx, "DELETE FROM tenancy.admission_records WHERE admitted_at < now() - make_interval(secs => $1)",
		deletionRecordRetention.Seconds()); err != nil {
		return fmt.Errorf("pruning admission records: %w", err)
	}
	return nil
}

// deletionActor is who asked for the deletion of the object with uid, as the webhook recorded
// it, or fallback when nothing was recorded (a webhook that could not reach the database, or
// a deletion from before the webhooks).
func deletionActor(ctx context.Context, tx pgx.Tx, uid string, fallback Actor) (Actor, error) {
	var who string
	err := tx.QueryRow(ctx, "SELECT requested_by FROM tenancy.admission_records WHERE object_uid = $1 AND deletion", uid).Scan(&who)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fallback, nil
	case err != nil:
		return Actor{}, fmt.Errorf("reading who asked for the deletion: %w", err)
	}
	return Actor{Name: who, RequestID: fallback.RequestID}, nil
}
