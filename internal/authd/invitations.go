package authd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// AcceptedAnnotation is set on a Membership when its invitation is accepted: it wakes the
// Membership controller, which then shows the membership Active and removes the invitation.
const AcceptedAnnotation = "tenancy.dev/invitation-accepted-at"

type acceptRequest struct {
	Token    string `json:"token"`
	Password string `json:"password"`
	// OTP or RecoveryCode: the second factor of an account with an authenticator that proves
	// itself with its password.
	OTP          string `json:"otp"`
	RecoveryCode string `json:"recovery_code"`
}

// errProof is an accepting request that may not accept for the invitation's user.
type errProof struct{ message string }

func (e *errProof) Error() string { return e.message }

// acceptInvitation activates the membership of an invitation token. A user without a password
// sets one; a user with one proves it (the password, or an access token of theirs).
func (s *Server) acceptInvitation(w http.ResponseWriter, r *http.Request) {
	var req acceptRequest
	if err := decodeJSON(r, &req); err != nil || req.Token == "" || len(req.Token) > 128 {
		writeError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	if s.throttled(w, r) {
		return
	}
	claims, ok := s.bearer(r)
	if !ok {
		claims = nil
	}
	inv, err := s.redeemInvitation(w, r, req, claims)
	var proof *errProof
	var refused *problem
	switch {
	case errors.As(err, &refused):
		s.answerError(w, r, err)
		return
	case errors.Is(err, errInvalidInvitation):
		writeError(w, http.StatusBadRequest, "invalid_invitation", err.Error())
		return
	case errors.As(err, &proof):
		writeError(w, http.StatusUnauthorized, "invalid_credentials", proof.message)
		return
	case err != nil:
		s.failed(w, r, err)
		return
	}
	u := user{ID: inv.UserID, Email: inv.Email}
	memberships, err := s.store.memberships(r.Context(), u.ID)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	a, err := chooseAccess(memberships, inv.OrgID, "")
	if err != nil {
		a = access{} // e.g. several project memberships: log in naming one
	}
	resp, err := s.startSession(r, u, a, inv.SecondFactor)
	if err != nil {
		s.answerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// redeemInvitation uses an invitation token for the API and the invitation page. A user
// without a password sets one; a user with one proves it (the password, throttled as a login
// is, or claims of an access token of theirs; nil when there is none).
func (s *Server) redeemInvitation(w http.ResponseWriter, r *http.Request, req acceptRequest, claims *tenancy.Claims) (invitation, error) {
	password := req.Password
	secondFactor := false
	inv, err := s.store.acceptInvitation(r.Context(), req.Token, func(inv invitation) (*string, error) {
		if inv.PasswordHash == nil {
			if err := checkNewPassword(password); err != nil {
				return nil, &errProof{err.Error()}
			}
			hash, err := s.hashPassword(password)
			return &hash, err
		}
		// Only authd's own session proves the person: an application they signed in to does not.
		if claims != nil && claims.ClientID == tenancy.SessionClientID && claims.Subject == inv.UserID {
			secondFactor = hasSecondFactor(claims)
			return nil, nil
		}
		if password != "" {
			if err := s.beginPasswordAttempt(w, r, inv.Email); err != nil {
				return nil, err
			}
			ok, _, err := s.verifyPassword(truncate(password, maxPasswordLength), *inv.PasswordHash)
			s.endPasswordAttempt(r, inv.Email, err == nil && ok)
			if err == nil && ok {
				// The password alone is not this account's login: its second factor is needed too.
				secondFactor, err = s.secondFactor(r, user{ID: inv.UserID, Email: inv.Email}, req.OTP, req.RecoveryCode)
				return nil, err
			}
		}
		return nil, &errProof{"this account has a password: send it, or an access token of the account"}
	})
	if err != nil {
		return inv, err
	}
	inv.SecondFactor = secondFactor
	s.audit(r, auditEntry{Actor: inv.Email, ActorUserID: &inv.UserID, Action: "invitation.accepted",
		Target: "membership/" + inv.MembershipUID, OrgID: &inv.OrgID})
	if err := s.wakeMembership(r.Context(), inv); err != nil {
		// The membership is active in the database; the controller shows it at its next resync.
		s.log.Error(err, "Waking the Membership after an accepted invitation", "membership", inv.MembershipUID)
	}
	if inv.Verified {
		s.emailVerified(r, user{ID: inv.UserID, Email: inv.Email}, "emailed invitation")
	}
	return inv, nil
}

// wakeMembership annotates the accepted Membership, so that its controller reconciles it now.
func (s *Server) wakeMembership(ctx context.Context, inv invitation) error {
	var list tenancyv1.MembershipList
	if err := s.kube.Client.List(ctx, &list, client.InNamespace(inv.Namespace)); err != nil {
		return fmt.Errorf("listing memberships in %s: %w", inv.Namespace, err)
	}
	for _, m := range list.Items {
		if string(m.UID) != inv.MembershipUID {
			continue
		}
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, AcceptedAnnotation, time.Now().UTC().Format(time.RFC3339))
		return s.kube.Client.Patch(ctx, &m, client.RawPatch(types.MergePatchType, patch))
	}
	return fmt.Errorf("no Membership with uid %s in %s", inv.MembershipUID, inv.Namespace)
}
