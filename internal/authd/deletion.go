package authd

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Deleting an account. authd accepts the request: it checks that no organization would lose its
// last Owner, disables the account and ends its sessions, all in one transaction. The manager's
// AccountEraser then deletes the account's Membership objects and, once their rows are gone,
// erases the account and pseudonymises the audit log (docs/auth.md, "Disabling and deleting
// accounts").

// deletionRequest is the person's confirmation: their password, and a second factor when they
// have one, so that a stolen access token alone cannot delete an account.
type deletionRequest struct {
	Password     string `json:"password"`
	OTP          string `json:"otp"`
	RecoveryCode string `json:"recovery_code"`
}

// deletionAccepted answers an accepted deletion.
type deletionAccepted struct {
	Status string `json:"status"`
	Email  string `json:"email"`
}

// lastOwnerProblem refuses a deletion that would leave organizations without an Owner.
func lastOwnerProblem(email string, orgs []string) error {
	return &problem{Status: http.StatusConflict, Code: "last_owner", Message: fmt.Sprintf(
		"%s is the last Owner of %s: make another member Owner first, or delete the organization, then delete the account",
		email, strings.Join(orgs, ", "))}
}

// deleteOwnAccount checks the person's password (and second factor) and accepts the deletion.
func (s *Server) deleteOwnAccount(r *http.Request, w http.ResponseWriter, u user, req deletionRequest) error {
	if err := s.provePassword(w, r, u, "password", req.Password); err != nil {
		return err
	}
	enrolled, err := s.store.hasTOTP(r.Context(), u.ID)
	if err != nil {
		return err
	}
	if enrolled {
		if err := s.proveSecondFactor(r, u, "otp", req.OTP, req.RecoveryCode); err != nil {
			return err
		}
	}
	return s.acceptDeletion(r, u.ID, u.Email, u.Email, &u.ID)
}

// acceptDeletion marks the account for erasure, disables it and ends its sessions; actor is who
// asked (the person, or a platform admin's Kubernetes username).
func (s *Server) acceptDeletion(r *http.Request, userID, email, actor string, actorUserID *string) error {
	ctx := r.Context()
	var orphaned []string
	err := pgx.BeginFunc(ctx, s.store.pool, func(tx pgx.Tx) error {
		// One deletion at a time: two Owners of one organization deleting their accounts at once
		// must not both see the other as the Owner who remains.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('tenancy.account_deletion'))"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			SELECT o.name FROM tenancy.memberships m JOIN tenancy.organizations o ON o.id = m.organization_id
			WHERE m.user_id = $1 AND m.project_id IS NULL AND m.role = 'Owner' AND m.state = 'Active'
			  AND NOT EXISTS (
			      SELECT 1 FROM tenancy.memberships other JOIN tenancy.users ou ON ou.id = other.user_id
			      WHERE other.organization_id = m.organization_id AND other.project_id IS NULL AND other.role = 'Owner'
			        AND other.state = 'Active' AND other.user_id <> $1 AND ou.deletion_requested_at IS NULL)
			ORDER BY o.name`, userID)
		if err != nil {
			return err
		}
		if orphaned, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		if len(orphaned) > 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE tenancy.users SET disabled = true, deletion_requested_at = coalesce(deletion_requested_at, now()), updated_at = now()
			WHERE id = $1`, userID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE tenancy.refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL`, userID)
		return err
	})
	if err != nil {
		return fmt.Errorf("accepting the deletion of %s: %w", email, err)
	}
	if len(orphaned) > 0 {
		return lastOwnerProblem(email, orphaned)
	}
	s.audit(r, auditEntry{Actor: actor, ActorUserID: actorUserID, Action: "account.deletion_requested", Target: "user/" + email})
	return nil
}

// deleteOwnAccountJSON is DELETE /api/v1/me.
func (s *Server) deleteOwnAccountJSON(_ context.Context, w http.ResponseWriter, r *http.Request, u user, _ string) error {
	req, err := bodyOf[deletionRequest](r)
	if err != nil {
		return err
	}
	if err := s.deleteOwnAccount(r, w, u, req); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, deletionAccepted{Status: "deletion_pending", Email: u.Email})
	return nil
}
