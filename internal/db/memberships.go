package db

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancy-dev/tenancy/internal/mail"
)

// Membership is the row a Membership custom resource produces.
type Membership struct {
	// ID is the row id; when set on upsert, a row deleted by hand comes back with the same id.
	ID             string
	UID            string
	Name           string
	OrganizationID string
	ProjectID      string // empty: the whole organization
	Email          string
	Role           string
	// VouchEmail records a platform admin's say-so that the email belongs to the account's
	// holder: the user becomes verified.
	VouchEmail bool
}

// MembershipResult is what UpsertMembership found or wrote.
type MembershipResult struct {
	UpsertResult
	UserID string
	State  string // Invited or Active
}

// DuplicateMembershipError says that another row already gives this user a role in this scope.
type DuplicateMembershipError struct {
	// UID is the metadata.uid recorded by the other row.
	UID string
}

func (e *DuplicateMembershipError) Error() string {
	return fmt.Sprintf("the user already has a membership in this scope (recorded for object %s)", e.UID)
}

// NormalizeEmail trims and lower-cases an email address, as users.email stores it.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// upsertMembershipSQL makes sure the user row exists and upserts the membership in one statement,
// one round trip. A user inserted at the same moment by another statement makes ON CONFLICT DO
// NOTHING return no row while the statement's snapshot does not see that row yet: then the whole
// statement returns nothing and is run again, with a snapshot that sees it. With $10 (a platform
// admin vouches for the email) the user becomes verified; a verified user's membership is Active
// at once, and an Invited one becomes Active once its user is verified.
const upsertMembershipSQL = `
WITH new_user AS (
    INSERT INTO tenancy.users (email, email_verified_at) VALUES ($6, CASE WHEN $10::boolean THEN now() END)
    ON CONFLICT (email) DO NOTHING
    RETURNING id, email_verified_at IS NOT NULL AS verified
), member AS (
    SELECT id, verified FROM new_user
    UNION ALL
    SELECT id, email_verified_at IS NOT NULL OR $10::boolean FROM tenancy.users WHERE email = $6
    LIMIT 1
), vouched AS (
    UPDATE tenancy.users u SET email_verified_at = now(), updated_at = now()
    FROM member WHERE $10::boolean AND u.id = member.id AND u.email_verified_at IS NULL
    RETURNING u.id
), upsert AS (
    INSERT INTO tenancy.memberships AS m (id, uid, organization_id, project_id, user_id, role, state)
    SELECT coalesce($1::uuid, gen_random_uuid()), $2, $3, $4, member.id, $5,
           CASE WHEN member.verified THEN 'Active' ELSE 'Invited' END::tenancy.membership_state
    FROM member
    -- A row that already matches is left untouched: no lock, no write, so a resync only reads.
    WHERE NOT EXISTS (SELECT 1 FROM tenancy.memberships x WHERE x.uid = $2::uuid
                      AND (x.organization_id, x.project_id, x.user_id, x.role)
                          IS NOT DISTINCT FROM ($3::uuid, $4::uuid, member.id, $5::tenancy.role)
                      AND (x.state = 'Active' OR NOT member.verified))
    ON CONFLICT (uid) DO UPDATE
        SET organization_id = excluded.organization_id, project_id = excluded.project_id,
            user_id = excluded.user_id, role = excluded.role,
            state = CASE WHEN excluded.state = 'Active' THEN 'Active'::tenancy.membership_state ELSE m.state END,
            updated_at = now()
        WHERE (m.organization_id, m.project_id, m.user_id, m.role)
              IS DISTINCT FROM (excluded.organization_id, excluded.project_id, excluded.user_id, excluded.role)
           OR (m.state = 'Invited' AND excluded.state = 'Active')
    RETURNING m.id, m.state, (m.xmax = 0) AS inserted
), audit AS (
    INSERT INTO tenancy.audit_log (actor, action, target, organization_id, request_id, details)
    SELECT $7, CASE WHEN inserted THEN 'membership.created' ELSE 'membership.updated' END,
           'membership/' || $9::text, $3, $8,
           jsonb_build_object('user', $6::text, 'role', $5::text, 'projectID', $4::text, 'state', upsert.state::text)
    FROM upsert
    UNION ALL
    SELECT $7, 'user.email_verified', 'user/' || $6::text, $3, $8,
           jsonb_build_object('by', 'platform admin', 'membership', $9::text)
    FROM vouched
)
SELECT upsert.id, upsert.state::text, true, member.id FROM upsert, member
UNION ALL
SELECT m.id, m.state::text, false, member.id FROM tenancy.memberships m, member WHERE m.uid = $2
LIMIT 1`

// UpsertMembership makes sure the user row exists (by normalized email) and upserts the
// membership row keyed by the resource's uid. A new membership is Active when the user's email is
// verified, Invited otherwise; later the invitation's acceptance, or the user's verification,
// makes it Active, and nothing makes it Invited again. When
// another row gives the user a role in the same scope, it returns *DuplicateMembershipError.
func (p *Postgres) UpsertMembership(ctx context.Context, m Membership, actor Actor) (MembershipResult, error) {
	if err := p.ensureMigrated(); err != nil {
		return MembershipResult{}, err
	}
	email := NormalizeEmail(m.Email)
	var r MembershipResult
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = p.pool.QueryRow(ctx, upsertMembershipSQL,
			nullUUID(m.ID), m.UID, m.OrganizationID, nullUUID(m.ProjectID), m.Role, email,
			actor.Name, actor.RequestID, m.Name, m.VouchEmail,
		).Scan(&r.ID, &r.State, &r.Changed, &r.UserID)
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	if isUniqueViolationOn(err, "memberships_organization_id_project_id_user_id_key") {
		var other string
		lookupErr := p.pool.QueryRow(ctx, `
			SELECT m.uid FROM tenancy.memberships m JOIN tenancy.users u ON u.id = m.user_id
			WHERE m.organization_id = $1 AND m.project_id IS NOT DISTINCT FROM $2 AND u.email = $3`,
			m.OrganizationID, nullUUID(m.ProjectID), email).Scan(&other)
		if lookupErr != nil {
			return MembershipResult{}, fmt.Errorf("finding the membership that holds this scope: %w", lookupErr)
		}
		return MembershipResult{}, &DuplicateMembershipError{UID: other}
	}
	if err != nil {
		return MembershipResult{}, fmt.Errorf("upserting membership %s: %w", m.Name, err)
	}
	return r, nil
}

// DeleteMembership removes the membership row (its invitations go with it). When it was the
// user's last membership in the organization, the user's refresh tokens for that organization are
// revoked too, so no session outlives the removal. It is idempotent.
func (p *Postgres) DeleteMembership(ctx context.Context, uid, name string, actor Actor) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var orgID, userID string
		err := tx.QueryRow(ctx, "DELETE FROM tenancy.memberships WHERE uid = $1 RETURNING organization_id, user_id", uid).
			Scan(&orgID, &userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if actor, err = deletionActor(ctx, tx, uid, actor); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			UPDATE tenancy.refresh_tokens SET revoked_at = now()
			WHERE user_id = $1 AND organization_id = $2 AND revoked_at IS NULL
			  AND NOT EXISTS (SELECT 1 FROM tenancy.memberships WHERE user_id = $1 AND organization_id = $2)`,
			userID, orgID)
		if err != nil {
			return fmt.Errorf("revoking refresh tokens: %w", err)
		}
		return insertAudit(ctx, tx, actor, "membership.deleted", "membership/"+name, orgID,
			map[string]any{"userID": userID, "refreshTokensRevoked": tag.RowsAffected()})
	})
	if err != nil {
		return fmt.Errorf("deleting membership %s: %w", name, err)
	}
	return nil
}

// InvitationState is what the database says about an invitation token.
type InvitationState int

// The invitation states.
const (
	InvitationUnknown InvitationState = iota // no such token for this membership, or already used
	InvitationValid
	InvitationExpired
)

// CheckInvitation looks up the invitation with tokenHash for the membership.
func (p *Postgres) CheckInvitation(ctx context.Context, membershipID string, tokenHash []byte) (InvitationState, time.Time, error) {
	if err := p.ensureMigrated(); err != nil {
		return InvitationUnknown, time.Time{}, err
	}
	var expires time.Time
	err := p.pool.QueryRow(ctx, `
		SELECT expires_at FROM tenancy.invitations
		WHERE membership_id = $1 AND hash = $2 AND used_at IS NULL`, membershipID, tokenHash).Scan(&expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return InvitationUnknown, time.Time{}, nil
	case err != nil:
		return InvitationUnknown, time.Time{}, fmt.Errorf("checking the invitation: %w", err)
	case !expires.After(time.Now()):
		return InvitationExpired, expires, nil
	}
	return InvitationValid, expires, nil
}

// replaceInvitationSQL voids the membership's unused invitations, records the new one and audits
// it in one statement: one round trip, and all or nothing without a transaction of its own.
const replaceInvitationSQL = `
WITH voided AS (
    DELETE FROM tenancy.invitations WHERE membership_id = $1 AND used_at IS NULL
), issued AS (
    INSERT INTO tenancy.invitations (hash, membership_id, expires_at, emailed) VALUES ($2, $1, $3, $8)
)
INSERT INTO tenancy.audit_log (actor, action, target, organization_id, request_id, details)
VALUES ($4, 'invitation.issued', 'membership/' || $1::text, $5, $6,
        jsonb_build_object('expiresAt', $7::text, 'delivery', CASE WHEN $8 THEN 'Email' ELSE 'Link' END))`

// ReplaceInvitation voids the membership's unused invitations and records a new one. With
// emailed, the mail that carries the token is queued in the same transaction: the token is then
// known to the member's mailbox only, and accepting it proves the address.
func (p *Postgres) ReplaceInvitation(ctx context.Context, membershipID, orgID string, tokenHash []byte, expires time.Time, actor Actor, emailed *mail.Message) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, replaceInvitationSQL, membershipID, tokenHash, expires,
			actor.Name, nullUUID(orgID), actor.RequestID, expires.UTC().Format(time.RFC3339), emailed != nil); err != nil {
			return err
		}
		if emailed == nil {
			return nil
		}
		return mail.Enqueue(ctx, tx, *emailed)
	})
	if err != nil {
		return fmt.Errorf("recording the invitation: %w", err)
	}
	return nil
}

// VoidInvitations deletes the membership's unused invitations.
func (p *Postgres) VoidInvitations(ctx context.Context, membershipID string) error {
	if err := p.ensureMigrated(); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, "DELETE FROM tenancy.invitations WHERE membership_id = $1 AND used_at IS NULL", membershipID); err != nil {
		return fmt.Errorf("voiding invitations: %w", err)
	}
	return nil
}
