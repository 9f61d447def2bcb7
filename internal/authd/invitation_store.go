package authd

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

// errInvalidInvitation is an invitation token that is unknown, used or expired.
var errInvalidInvitation = errors.New("the invitation is unknown, used or expired")

// invitation is an open invitation with its membership and user.
type invitation struct {
	ID            string
	MembershipID  string
	MembershipUID string
	UserID        string
	Email         string
	PasswordHash  *string
	OrgID         string
	OrgName       string
	Namespace     string
	// Emailed: the token went only to the user's mailbox, so accepting it proved the address;
	// Verified says that this acceptance made the user verified.
	Emailed  bool
	Verified bool
	// SecondFactor: the acceptance was proven with the account's second factor, or by a token of
	// a session that began with one.
	SecondFactor bool
}

// acceptInvitation uses the invitation token once. prove decides, for the invitation's user,
// whether the request may accept it and returns a new password hash to set (nil to keep the
// user's); its error leaves the invitation open.
func (s *Store) acceptInvitation(ctx context.Context, token string, prove func(invitation) (*string, error)) (invitation, error) {
	var inv invitation
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			SELECT i.id, m.id, m.uid, u.id, u.email::text, u.password_hash, o.id, o.name, o.namespace, i.emailed
			FROM tenancy.invitations i
			JOIN tenancy.memberships m ON m.id = i.membership_id
			JOIN tenancy.users u ON u.id = m.user_id
			JOIN tenancy.organizations o ON o.id = m.organization_id
			WHERE i.hash = $1 AND i.used_at IS NULL AND i.expires_at > now() AND NOT u.disabled
			FOR UPDATE OF i, u`, hashOf(token)).
			Scan(&inv.ID, &inv.MembershipID, &inv.MembershipUID, &inv.UserID, &inv.Email, &inv.PasswordHash, &inv.OrgID, &inv.OrgName, &inv.Namespace, &inv.Emailed)
		if errors.Is(err, pgx.ErrNoRows) {
			return errInvalidInvitation
		}
		if err != nil {
			return err
		}
		newHash, err := prove(inv)
		if err != nil {
			return err
		}
		if newHash != nil {
			tag, err := tx.Exec(ctx, `UPDATE tenancy.users SET password_hash = $2, password_changed_at = now(), updated_at = now()
				WHERE id = $1 AND password_hash IS NULL`, inv.UserID, *newHash)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return &errProof{"this account got a password meanwhile: send it, or an access token of the account"}
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE tenancy.invitations SET used_at = now() WHERE id = $1`, inv.ID); err != nil {
			return err
		}
		if inv.Emailed {
			if inv.Verified, err = markEmailVerified(ctx, tx, user{ID: inv.UserID}); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE tenancy.memberships SET state = 'Active', updated_at = now() WHERE id = $1`, inv.MembershipID)
		return err
	})
	return inv, err
}

// invitationPreview is what the invitation page shows before it is accepted.
type invitationPreview struct {
	Email       string
	Org         string
	Project     string
	Role        string
	HasPassword bool
	HasTOTP     bool
}

// previewInvitation reads an open invitation without using it.
func (s *Store) previewInvitation(ctx context.Context, token string) (invitationPreview, error) {
	var p invitationPreview
	err := s.pool.QueryRow(ctx, `
		SELECT u.email::text, coalesce(nullif(o.display_name, ''), o.name), coalesce(pr.name, ''), m.role::text, u.password_hash IS NOT NULL,
		       EXISTS (SELECT 1 FROM tenancy.totp_factors f WHERE f.user_id = u.id AND f.confirmed_at IS NOT NULL)
		FROM tenancy.invitations i
		JOIN tenancy.memberships m ON m.id = i.membership_id
		JOIN tenancy.users u ON u.id = m.user_id
		JOIN tenancy.organizations o ON o.id = m.organization_id
		LEFT JOIN tenancy.projects pr ON pr.id = m.project_id
		WHERE i.hash = $1 AND i.used_at IS NULL AND i.expires_at > now() AND NOT u.disabled`, hashOf(token)).
		Scan(&p.Email, &p.Org, &p.Project, &p.Role, &p.HasPassword, &p.HasTOTP)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, errInvalidInvitation
	}
	return p, err
}
