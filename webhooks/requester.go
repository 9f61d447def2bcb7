package webhooks

import (
	"context"
	"fmt"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// requester is who sent the admission request.
type requester struct {
	// username is the Kubernetes username.
	username string
	// email is the tenancy user the username stands for, "" when it stands for none.
	email string
	// platformAdmin requesters are decided by the schema and the structural rules alone.
	platformAdmin bool
	// namedAdmin requesters are platform admins by --platform-admin-users or
	// --platform-admin-groups: people acting for the platform. The operator's service accounts are
	// platform admins for what they do on others' behalf, never named ones, whatever their groups.
	namedAdmin bool
	// operator is the manager or authd acting with its own service account.
	operator bool
	// dryRun requests are decided the same way but leave no record behind.
	dryRun bool
}

// requesterOf reads the requester from the admission request in ctx.
func (a *admitter) requesterOf(ctx context.Context) (requester, error) {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return requester{}, fmt.Errorf("reading the admission request: %w", err)
	}
	u := req.UserInfo
	r := requester{
		username: u.Username,
		operator: a.isOperator(u.Username),
		dryRun:   req.DryRun != nil && *req.DryRun,
	}
	r.namedAdmin = !r.operator && tenant.IsPlatformAdmin(u.Username, u.Groups, a.settings.PlatformAdminUsers, a.settings.PlatformAdminGroups)
	r.platformAdmin = r.operator || r.namedAdmin
	r.email = tenancyEmail(u.Username, a.settings.UsernamePrefix)
	return r, nil
}

// tenancyEmail is the email of the tenancy user that username stands for: the username without
// the prefix, normalised. Kubernetes' own identities (system:…) and usernames without the prefix
// stand for nobody.
func tenancyEmail(username, prefix string) string {
	if strings.HasPrefix(username, "system:") || !strings.HasPrefix(username, prefix) {
		return ""
	}
	email := db.NormalizeEmail(strings.TrimPrefix(username, prefix))
	if !strings.Contains(email, "@") {
		return ""
	}
	return email
}

// name is how refusals call the requester.
func (r requester) name() string {
	if r.email != "" {
		return r.email
	}
	return r.username
}
