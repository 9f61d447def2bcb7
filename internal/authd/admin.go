package authd

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// The platform admins' API: disable, enable and delete accounts. A platform admin is a
// Kubernetes identity, not a tenancy user, so these endpoints take a Kubernetes bearer token
// (`kubectl create token`, a service account's token, or whatever the API server accepts), which
// authd checks with a TokenReview; the identity must be one of --platform-admin-users or belong
// to one of --platform-admin-groups, as the webhooks decide. Suspensions are AccountSuspension
// objects, so that kubectl and GitOps see the same state as this API.

// platformAdmin is the Kubernetes identity behind an admin request.
type platformAdmin struct{ username string }

// asPlatformAdmin authenticates a platform admin by their Kubernetes token.
func (s *Server) asPlatformAdmin(h func(w http.ResponseWriter, r *http.Request, admin platformAdmin) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		admin, err := s.platformAdminOf(r)
		if err == nil {
			err = h(w, r, admin)
		}
		s.answerError(w, r, err)
	}
}

// platformAdminOf reviews the request's bearer token with the API server.
func (s *Server) platformAdminOf(r *http.Request) (platformAdmin, error) {
	unauthorized := &problem{Status: http.StatusUnauthorized, Code: "invalid_token",
		Message: "the admin API takes a Kubernetes bearer token of a platform admin (kubectl create token, or the API server's credentials)"}
	token, ok := bearerToken(r)
	if !ok {
		return platformAdmin{}, unauthorized
	}
	username, authenticated, admin, err := s.reviewKubernetesToken(r.Context(), token)
	switch {
	case err != nil:
		return platformAdmin{}, err
	case !authenticated:
		return platformAdmin{}, unauthorized
	case !admin:
		return platformAdmin{}, &problem{Status: http.StatusForbidden, Code: "forbidden", Message: fmt.Sprintf(
			"%s is not a platform admin (--platform-admin-users, --platform-admin-groups)", username)}
	}
	return platformAdmin{username: username}, nil
}

// reviewKubernetesToken checks a Kubernetes token with a TokenReview: whose it is, whether the
// API server knows it, and whether it is a platform admin's.
func (s *Server) reviewKubernetesToken(ctx context.Context, token string) (username string, authenticated, admin bool, err error) {
	review := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}
	if err := s.kube.Client.Create(ctx, review); err != nil {
		return "", false, false, fmt.Errorf("reviewing the token with the API server: %w", err)
	}
	u := review.Status.User
	return u.Username, review.Status.Authenticated,
		review.Status.Authenticated && tenant.IsPlatformAdmin(u.Username, u.Groups, s.cfg.PlatformAdminUsers, s.cfg.PlatformAdminGroups), nil
}

// suspensionRequest disables an account.
type suspensionRequest struct {
	Email  string `json:"email"`
	Reason string `json:"reason"`
}

// suspensionView is an AccountSuspension as the admin API shows it.
type suspensionView struct {
	Name          string     `json:"name"`
	Email         string     `json:"email"`
	Reason        string     `json:"reason,omitempty"`
	Ready         bool       `json:"ready"`
	UserID        string     `json:"userID,omitempty"`
	SessionsEnded int64      `json:"sessionsEnded"`
	CreatedAt     *time.Time `json:"createdAt,omitempty"`
}

func suspensionViewOf(a *tenancyv1.AccountSuspension) suspensionView {
	ready, _ := readiness(a.Status.Conditions)
	return suspensionView{Name: a.Name, Email: a.Spec.Email, Reason: a.Spec.Reason, Ready: ready, UserID: a.Status.UserID,
		SessionsEnded: a.Status.SessionsEnded, CreatedAt: timePtr(&a.CreationTimestamp)}
}

// suspensionsOf lists the AccountSuspensions of an address, whoever made them.
func (s *Server) suspensionsOf(ctx context.Context, email string) ([]tenancyv1.AccountSuspension, error) {
	var list tenancyv1.AccountSuspensionList
	if err := s.kube.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing account suspensions: %w", err)
	}
	var found []tenancyv1.AccountSuspension
	for _, a := range list.Items {
		if email == "" || db.NormalizeEmail(a.Spec.Email) == email {
			found = append(found, a)
		}
	}
	return found, nil
}

// listSuspensions is GET /api/v1/admin/suspensions.
func (s *Server) listSuspensions(w http.ResponseWriter, r *http.Request, _ platformAdmin) error {
	all, err := s.suspensionsOf(r.Context(), "")
	if err != nil {
		return err
	}
	views := make([]suspensionView, 0, len(all))
	for i := range all {
		views = append(views, suspensionViewOf(&all[i]))
	}
	writeItems(w, views)
	return nil
}

// suspend is POST /api/v1/admin/suspensions: it creates the address's AccountSuspension, or
// answers the one that exists.
func (s *Server) suspend(w http.ResponseWriter, r *http.Request, admin platformAdmin) error {
	req, err := bodyOf[suspensionRequest](r)
	if err != nil {
		return err
	}
	email := db.NormalizeEmail(req.Email)
	if !strings.Contains(email, "@") {
		return badRequest("email", "required: the address of the account to disable")
	}
	if existing, err := s.suspensionsOf(r.Context(), email); err != nil {
		return err
	} else if len(existing) > 0 {
		writeJSON(w, http.StatusOK, suspensionViewOf(&existing[0]))
		return nil
	}
	a := &tenancyv1.AccountSuspension{
		// A generated name: one derived from the address would outlive the account in the audit log.
		ObjectMeta: metav1.ObjectMeta{GenerateName: "suspension-",
			Annotations: map[string]string{tenancyv1.LastChangedByAnnotation: admin.username}},
		Spec: tenancyv1.AccountSuspensionSpec{Email: email, Reason: req.Reason},
	}
	if err := s.kube.Client.Create(r.Context(), a); err != nil {
		return kubeProblem(err)
	}
	writeJSON(w, http.StatusCreated, suspensionViewOf(a))
	return nil
}

// unsuspend is DELETE /api/v1/admin/suspensions/{email}: every AccountSuspension of the address
// goes, and the account is enabled again (unless it is being deleted).
func (s *Server) unsuspend(w http.ResponseWriter, r *http.Request, admin platformAdmin) error {
	email := db.NormalizeEmail(r.PathValue("email"))
	found, err := s.suspensionsOf(r.Context(), email)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return notFound(fmt.Sprintf("no AccountSuspension names %s", email))
	}
	for i := range found {
		a := &found[i]
		// The deletion is audited with the annotation's name: say who asks before deleting.
		before := a.DeepCopy()
		metav1.SetMetaDataAnnotation(&a.ObjectMeta, tenancyv1.LastChangedByAnnotation, admin.username)
		if err := s.kube.Client.Patch(r.Context(), a, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
			return kubeProblem(err)
		}
		if err := s.kube.Client.Delete(r.Context(), a); client.IgnoreNotFound(err) != nil {
			return kubeProblem(err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteAccount is DELETE /api/v1/admin/users/{email}: the same deletion as the person's own,
// without their password.
func (s *Server) deleteAccount(w http.ResponseWriter, r *http.Request, admin platformAdmin) error {
	email := db.NormalizeEmail(r.PathValue("email"))
	u, found, err := s.store.userByEmail(r.Context(), email)
	if err != nil {
		return err
	}
	if !found {
		return notFound(fmt.Sprintf("no account has the address %s", email))
	}
	if err := s.acceptDeletion(r, u.ID, u.Email, admin.username, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, deletionAccepted{Status: "deletion_pending", Email: u.Email})
	return nil
}

// routeAdmin registers the admin API.
func (s *Server) routeAdmin(route func(pattern string, h http.HandlerFunc)) {
	route("GET /api/v1/admin/suspensions", s.asPlatformAdmin(s.listSuspensions))
	route("POST /api/v1/admin/suspensions", s.asPlatformAdmin(s.suspend))
	route("DELETE /api/v1/admin/suspensions/{email}", s.asPlatformAdmin(s.unsuspend))
	route("DELETE /api/v1/admin/users/{email}", s.asPlatformAdmin(s.deleteAccount))
}
