// Package webhooks holds the admission webhooks of every tenancy kind: defaulters that fill the
// defaults, normalise emails and stamp who changed an object, and validators that refuse role
// changes a requester may not make and objects that do not fit their organization.
//
// Decisions read the manager's cache. The one exception is the removal or demotion of an
// organization's Owner, which is serialized per organization in PostgreSQL so that two replicas
// cannot each admit the removal of one of the last two Owners.
package webhooks

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
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
	return register(mgr, &tenancyv1.TenantTable{}, &tenantTableWebhook{a})
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
