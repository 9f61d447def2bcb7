package authd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

var organizationName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

type signupRequest struct {
	Email        string `json:"email"`
	Password     string `json:"password"`
	Organization string `json:"organization"`
}

// signup creates an account for a new email and, with organization, the Organization and the
// user's Owner Membership as custom resources, so that the operator, its webhooks and GitOps see
// them like any other. It answers once both are Ready, or 503 with nothing left behind.
func (s *Server) signup(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.AllowSignup {
		writeError(w, http.StatusNotFound, "not_found", "signup is not enabled on this server")
		return
	}
	var req signupRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	email := db.NormalizeEmail(req.Email)
	switch {
	case !strings.Contains(email, "@") || len(email) > 254:
		writeError(w, http.StatusBadRequest, "invalid_request", "email: must be an email address")
		return
	case req.Organization != "" && !organizationName.MatchString(req.Organization):
		writeError(w, http.StatusBadRequest, "invalid_request", "organization: must be a DNS label (lower-case letters, digits and '-', at most 63)")
		return
	}
	if err := checkNewPassword(req.Password); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if s.throttled(w, r) {
		return
	}
	if _, found, err := s.store.userByEmail(r.Context(), email); err != nil || found {
		if err != nil {
			s.failed(w, r, err)
		} else {
			refuseSignup(w)
		}
		return
	}
	hash, err := s.hashPassword(req.Password)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if req.Organization == "" {
		u, err := s.store.createUser(r.Context(), email, hash)
		if errors.Is(err, errEmailTaken) {
			refuseSignup(w)
			return
		}
		if err != nil {
			s.failed(w, r, err)
			return
		}
		s.audit(r, auditEntry{Actor: email, ActorUserID: &u.ID, Action: "user.signed_up", Target: "user/" + email})
		s.respondWithSession(w, r, u, access{})
		return
	}
	s.signupWithOrganization(w, r, email, hash, req.Organization)
}

func (s *Server) signupWithOrganization(w http.ResponseWriter, r *http.Request, email, hash, orgName string) {
	ctx := r.Context()
	stamp := map[string]string{tenancyv1.LastChangedByAnnotation: email}
	org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: orgName, Annotations: stamp}}
	owner := &tenancyv1.Membership{
		ObjectMeta: metav1.ObjectMeta{Namespace: orgName, Name: "owner", Annotations: stamp},
		Spec:       tenancyv1.MembershipSpec{User: email, Role: tenancyv1.RoleOwner},
	}
	// Signup creates organizations in new namespaces only: adopting one that exists, with its
	// Secrets and RoleBindings, is a platform admin's act. The webhooks refuse it too (a namespace
	// made between this check and the create), and reserved names; their messages may name other
	// tenants, so none is passed on.
	err := s.kube.Client.Get(ctx, client.ObjectKey{Name: orgName}, &corev1.Namespace{})
	if err == nil {
		refuseSignup(w)
		return
	}
	if !apierrors.IsNotFound(err) {
		s.failed(w, r, err)
		return
	}
	if err := s.kube.Client.Create(ctx, org); err != nil {
		if apierrors.IsAlreadyExists(err) || apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			s.log.V(1).Info("Signup refused by the Kubernetes API", "organization", orgName, "reason", err.Error())
			refuseSignup(w)
		} else {
			s.failed(w, r, err)
		}
		return
	}
	// One deadline for both: the Membership can be created once the operator has made the
	// namespace, and both must then become Ready.
	waitCtx, cancel := context.WithTimeout(ctx, s.cfg.SignupTimeout)
	defer cancel()
	err = wait.PollUntilContextCancel(waitCtx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		err := s.kube.Client.Create(ctx, owner)
		if apierrors.IsNotFound(err) {
			return false, nil // the namespace is not there yet
		}
		return err == nil, err
	})
	if err == nil {
		err = s.waitReady(waitCtx, org, owner)
	}
	if err != nil {
		s.undoSignup(context.WithoutCancel(ctx), org, owner, email)
		if wait.Interrupted(err) || waitCtx.Err() != nil { // the deadline passed, whichever call saw it
			w.Header().Set("Retry-After", "30")
			writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", fmt.Sprintf(
				"organization %s was not ready within %s, so nothing was kept; retry later", orgName, s.cfg.SignupTimeout))
			return
		}
		s.failed(w, r, err)
		return
	}
	u, err := s.store.activateOwner(ctx, email, hash, string(owner.UID))
	if errors.Is(err, errEmailTaken) {
		// Somebody else's account meanwhile: the signup must not hand back its session.
		s.undoSignup(context.WithoutCancel(ctx), org, owner, email)
		refuseSignup(w)
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if err := s.wakeMembership(ctx, invitation{MembershipUID: string(owner.UID), Namespace: orgName}); err != nil {
		s.log.Error(err, "Waking the Owner Membership after signup", "organization", orgName)
	}
	s.audit(r, auditEntry{Actor: email, ActorUserID: &u.ID, Action: "user.signed_up", Target: "user/" + email, OrgID: &org.Status.ID,
		Details: map[string]any{"organization": orgName}})
	memberships, err := s.store.memberships(ctx, u.ID)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	a, err := chooseAccess(memberships, org.Status.ID, "")
	if err != nil {
		s.failed(w, r, err)
		return
	}
	s.respondWithSession(w, r, u, a)
}

// respondWithSession answers a new account's first tokens, and mails it a link that verifies its
// address (a failure to queue it is logged: the person can ask again from the account page).
func (s *Server) respondWithSession(w http.ResponseWriter, r *http.Request, u user, a access) {
	if s.mail != nil {
		if err := s.requestVerification(r.Context(), u); err != nil {
			s.log.Error(err, "Queueing the verification mail of a new account", "user", u.ID)
		}
	}
	resp, err := s.startSession(r, u, a, false)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

// waitReady waits until every object is Ready, or ctx ends.
func (s *Server) waitReady(ctx context.Context, objects ...tenancyv1.Object) error {
	return wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, obj := range objects {
			if err := s.kube.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			ready := meta.FindStatusCondition(obj.CommonStatusRef().Conditions, tenancyv1.ReadyCondition)
			if ready == nil || ready.Status != metav1.ConditionTrue || obj.CommonStatusRef().ObservedGeneration != obj.GetGeneration() {
				return false, nil
			}
		}
		return true, nil
	})
}

// undoSignup deletes the Owner Membership and the Organization — explicitly both, since an
// adopted namespace outlives its Organization — and, once they are gone, the user row the
// Membership controller made.
func (s *Server) undoSignup(ctx context.Context, org *tenancyv1.Organization, owner *tenancyv1.Membership, email string) {
	var err error
	for _, obj := range []client.Object{owner, org} {
		if err = s.kube.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			break
		}
		err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			err := s.kube.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj)
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		if err != nil {
			break
		}
	}
	if err == nil {
		err = s.store.deleteUnusedUser(ctx, email)
	}
	if err != nil {
		s.log.Error(err, "Undoing a signup", "organization", org.Name)
	}
}

// refuseSignup answers every refused signup alike, whether the email has an account or the
// organization's name cannot be used, so that signup tells nobody which accounts or tenants
// exist.
func refuseSignup(w http.ResponseWriter) {
	writeError(w, http.StatusConflict, "signup_refused",
		"signup is not possible with this email and organization name: if you have an account, log in; otherwise choose another organization name")
}
