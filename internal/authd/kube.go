package authd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// TenancyUsersGroup is the group authd adds when it acts as a tenancy user, so that the API
// server's audit log and RBAC can tell these requests apart.
const TenancyUsersGroup = "tenancy:users"

// Kubernetes is how authd reaches the API server.
type Kubernetes struct {
	// Client acts with authd's own service account: signing keys, signup, invitations.
	Client client.Client
	// AsCaller acts as the person the request's context names (see NewCallerClient): the
	// self-service API and pages go through it, so that RBAC and the admission webhooks decide
	// as they would for that person's kubectl.
	AsCaller client.Client
}

type callerKey struct{}

// withCaller names the Kubernetes user that AsCaller requests in ctx impersonate.
func withCaller(ctx context.Context, username string) context.Context {
	return context.WithValue(ctx, callerKey{}, username)
}

// errNoCaller guards against a request that would otherwise go out with authd's own identity.
var errNoCaller = errors.New("no caller in the request context: authd acts on tenants' objects only as a tenancy user")

// NewCallerClient returns a client that impersonates, on every request, the user that
// withCaller put in the request's context, with the single group TenancyUsersGroup; a request
// without one fails before it leaves authd. mapper is shared with authd's own client, since
// discovery would run without a caller.
func NewCallerClient(cfg *rest.Config, scheme *runtime.Scheme, mapper meta.RESTMapper) (client.Client, error) {
	impersonating := rest.CopyConfig(cfg)
	if impersonating.Impersonate.UserName != "" {
		return nil, errors.New("the kubeconfig already impersonates someone; authd needs its own identity")
	}
	impersonating.Wrap(func(rt http.RoundTripper) http.RoundTripper { return callerTransport{next: rt} })
	return client.New(impersonating, client.Options{Scheme: scheme, Mapper: mapper})
}

type callerTransport struct{ next http.RoundTripper }

func (t callerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	username, _ := req.Context().Value(callerKey{}).(string)
	if username == "" {
		return nil, errNoCaller
	}
	req = req.Clone(req.Context())
	req.Header.Set("Impersonate-User", username)
	req.Header.Set("Impersonate-Group", TenancyUsersGroup)
	return t.next.RoundTrip(req)
}

// usernameOf is the Kubernetes username of a tenancy user, as the operator's RoleBindings name
// them; it refuses names authd must never act as.
func (s *Server) usernameOf(email string) (string, error) {
	username := tenant.Username(s.cfg.UsernamePrefix, email)
	if strings.HasPrefix(username, "system:") || slices.Contains(s.cfg.PlatformAdminUsers, username) {
		return "", fmt.Errorf("authd does not act as %s: it is a Kubernetes or platform administrator name", username)
	}
	return username, nil
}

// kubeProblem turns an error of the Kubernetes API into the same status, reason, message and
// field causes that kubectl shows; other errors stay as they are (failed answers them).
func kubeProblem(err error) error {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return err
	}
	st := status.Status()
	code := map[metav1.StatusReason]string{
		metav1.StatusReasonForbidden: "forbidden", metav1.StatusReasonInvalid: "invalid", metav1.StatusReasonNotFound: "not_found",
		metav1.StatusReasonAlreadyExists: "already_exists", metav1.StatusReasonConflict: "conflict", metav1.StatusReasonBadRequest: "invalid_request",
	}[st.Reason]
	if code == "" || st.Code < 400 || st.Code >= 500 {
		return err // timeouts, unavailability, server errors: not the caller's fault (failed answers 503)
	}
	if st.Reason == metav1.StatusReasonForbidden && strings.Contains(st.Message, "cannot impersonate") {
		// authd's own RBAC is missing: a deployment fault, not the caller's.
		return fmt.Errorf("authd may not impersonate the caller (config/authd/role.yaml): %w", err)
	}
	p := &problem{Status: int(st.Code), Code: code, Message: st.Message}
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			p.Fields = append(p.Fields, fieldProblem{Field: c.Field, Type: string(c.Type), Message: c.Message})
		}
	}
	return p
}
