package webhooks

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// The names config/default gives the webhook configurations, where --webhook-self-signed puts
// its CA.
const (
	MutatingConfigurationName   = "tenancy-mutating-webhook-configuration"
	ValidatingConfigurationName = "tenancy-validating-webhook-configuration"
)

// Records is what the validating webhooks keep in the database.
type Records interface {
	// AdmitOwnerRemoval admits the removal or demotion of an Owner when another one remains.
	AdmitOwnerRemoval(ctx context.Context, r db.OwnerRemoval) (bool, error)
	// RecordDeletion remembers who asked for a deletion, for the audit log.
	RecordDeletion(ctx context.Context, r db.AdmissionRecord) error
	// AdmitQuota admits a creation that a tier quota limits when the organization has room for it,
	// counting the creations other replicas admitted that cache does not show.
	AdmitQuota(ctx context.Context, q db.QuotaAdmission, cache func(admitted []string) (count int, shown []string, err error)) (used int, admitted bool, err error)
}

// Settings configure the webhooks.
type Settings struct {
	// PlatformAdminGroups and PlatformAdminUsers name the requesters who may do whatever the
	// schema and the structural rules allow. The operator's own service accounts always may.
	PlatformAdminGroups []string
	PlatformAdminUsers  []string
	// UsernamePrefix turns a Kubernetes username into a tenancy user's email by removing it
	// (the API server's --oidc-username-prefix).
	UsernamePrefix string
	// OperatorNamespace holds the operator's service accounts, tenancy-manager and tenancy-authd.
	OperatorNamespace string
}

// OperatorServiceAccounts are the usernames of the manager and authd service accounts in the
// operator's namespace: they act for the platform and keep the last-changed-by they send.
func OperatorServiceAccounts(operatorNamespace string) []string {
	return []string{
		"system:serviceaccount:" + operatorNamespace + ":tenancy-manager",
		"system:serviceaccount:" + operatorNamespace + ":tenancy-authd",
	}
}

// SetupWithManager registers the defaulting and validating webhook of every kind with mgr's
// webhook server; tenant.Setup must have registered the cache indexes.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, records Records, s Settings) error {
	members, err := tenant.NewCensus(ctx, mgr.GetCache(), &tenancyv1.Membership{}, func(o client.Object) string {
		return db.NormalizeEmail(o.(*tenancyv1.Membership).Spec.User)
	})
	if err != nil {
		return err
	}
	byName := func(o client.Object) string { return o.GetName() }
	projects, err := tenant.NewCensus(ctx, mgr.GetCache(), &tenancyv1.Project{}, byName)
	if err != nil {
		return err
	}
	apiKeys, err := tenant.NewCensus(ctx, mgr.GetCache(), &tenancyv1.APIKey{}, byName)
	if err != nil {
		return err
	}
	a := &admitter{
		members:  members,
		projects: projects,
		apiKeys:  apiKeys,
		cache:    mgr.GetClient(),
		live:     mgr.GetAPIReader(),
		scheme:   mgr.GetScheme(),
		records:  records,
		settings: s,
		operator: OperatorServiceAccounts(s.OperatorNamespace),
	}
	if err := register(mgr, &tenancyv1.Organization{}, &organizationWebhook{a}); err != nil {
		return err
	}
	if err := register(mgr, &tenancyv1.Project{}, &projectWebhook{a}); err != nil {
		return err
	}
	if err := register(mgr, &tenancyv1.Membership{}, &membershipWebhook{a}); err != nil {
		return err
	}
	if err := register(mgr, &tenancyv1.APIKey{}, &apiKeyWebhook{a}); err != nil {
		return err
	}
	if err := register(mgr, &tenancyv1.TenantTable{}, &tenantTableWebhook{a}); err != nil {
		return err
	}
	if err := register(mgr, &tenancyv1.AccountSuspension{}, &accountSuspensionWebhook{a}); err != nil {
		return err
	}
	return register(mgr, &tenancyv1.OAuthClient{}, &oauthClientWebhook{a})
}

// kindWebhook is one kind's defaulter and validator.
type kindWebhook[T client.Object] interface {
	admission.Defaulter[T]
	admission.Validator[T]
}

func register[T client.Object](mgr ctrl.Manager, obj T, w kindWebhook[T]) error {
	if err := ctrl.NewWebhookManagedBy(mgr, obj).WithDefaulter(w).WithValidator(w).Complete(); err != nil {
		return fmt.Errorf("registering the %T webhooks: %w", obj, err)
	}
	return nil
}

// admitter is what every kind's webhook shares: the cache, the database records and settings.
type admitter struct {
	cache client.Reader
	// live reads from the API server, for what the cache may not show yet.
	live     client.Reader
	scheme   *runtime.Scheme
	records  Records
	settings Settings
	// members, projects and apiKeys count what the quotas limit, per organization namespace.
	members, projects, apiKeys *tenant.Census
	operator                   []string
}

// isOperator reports whether username is one of the operator's own service accounts.
func (a *admitter) isOperator(username string) bool { return slices.Contains(a.operator, username) }

// quota is one of an organization's tier quotas, as a create counts it.
type quota struct {
	// what the refusal calls the counted objects, and the record their quota.
	what string
	// census counts, per namespace, the objects the cache shows, by key.
	census *tenant.Census
	// limit is the tier's; 0 is unlimited.
	limit int
	// path is the field a refusal names.
	path *field.Path
}

// projectsQuota, membersQuota and apiKeysQuota are org's quotas. Members count once per user,
// whatever their Memberships; projects and API keys once per name.
func (a *admitter) projectsQuota(org *tenancyv1.Organization) quota {
	return quota{what: "projects", census: a.projects, limit: org.Spec.Tier.Limits().Projects, path: namespacePath}
}

func (a *admitter) membersQuota(org *tenancyv1.Organization) quota {
	return quota{what: "members", census: a.members, limit: org.Spec.Tier.Limits().Members, path: userPath}
}

func (a *admitter) apiKeysQuota(org *tenancyv1.Organization) quota {
	return quota{what: "API keys", census: a.apiKeys, limit: org.Spec.Tier.Limits().APIKeys, path: namespacePath}
}

// admitQuota refuses the creation of obj, counted as key, when its organization's quota q has no
// room left. Keys already counted (a member's further Membership) take no room, and unlimited
// tiers never reach the database.
//
// A create that nothing else refuses is decided in PostgreSQL, serialized per organization: it
// counts what the cache shows plus the creations admitted in the last 30 seconds that the cache
// does not show yet (on whichever replica), and records its own. So two creates on two replicas
// cannot both take the last slot. One that other rules refuse anyway (others) only adds the
// cache's count to the refusals, and leaves no record.
func (a *admitter) admitQuota(ctx context.Context, org *tenancyv1.Organization, obj client.Object, key string, q quota, who requester, others field.ErrorList) (field.ErrorList, error) {
	if q.limit == 0 {
		return nil, nil
	}
	ns := obj.GetNamespace()
	n, counted, err := q.census.Count(ctx, ns, key)
	if err != nil || counted {
		return nil, err
	}
	// Refused already, or full by the cache's count alone (what other replicas admitted can only
	// add to it): no need to ask the database.
	if len(others) > 0 || n >= q.limit {
		return withinQuota(q.path, org, q.what, n, q.limit), nil
	}
	// Within the API server's 5 s, so that a database that hangs gets the 503 below.
	dbCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	used, admitted, err := a.records.AdmitQuota(dbCtx, db.QuotaAdmission{
		Namespace: ns,
		Quota:     q.what,
		Key:       key,
		ObjectUID: string(obj.GetUID()),
		Limit:     q.limit,
		DryRun:    who.dryRun,
	}, func(pending []string) (int, []string, error) {
		// The admitted keys first, the total last: an object that reaches the cache in between is
		// counted twice, which can only refuse, never admit, one too many.
		var shown []string
		for _, k := range pending {
			_, isShown, err := q.census.Count(ctx, ns, k)
			if err != nil {
				return 0, nil, err
			}
			if isShown {
				shown = append(shown, k)
			}
		}
		n, _, err := q.census.Count(ctx, ns, "")
		return n, shown, err
	})
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Counting a quota", "organization", org.Name, "quota", q.what)
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf(
			"cannot count the %s of %s: the database is unavailable; try again", q.what, org.Name))
	}
	if !admitted {
		return withinQuota(q.path, org, q.what, used, q.limit), nil
	}
	return nil, nil
}
