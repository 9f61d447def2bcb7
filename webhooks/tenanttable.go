package webhooks

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// +kubebuilder:webhook:path=/mutate-tenancy-dev-v1alpha1-tenanttable,mutating=true,failurePolicy=fail,sideEffects=None,groups=tenancy.dev,resources=tenanttables,verbs=create;update,versions=v1alpha1,name=mtenanttable.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-tenancy-dev-v1alpha1-tenanttable,mutating=false,failurePolicy=fail,sideEffects=NoneOnDryRun,groups=tenancy.dev,resources=tenanttables,verbs=create;delete,versions=v1alpha1,name=vtenanttable.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5

// tenantTableWebhook defaults and validates TenantTables. Who may create one is Kubernetes RBAC's
// decision (platform teams).
type tenantTableWebhook struct{ *admitter }

// Default fills the schema, the organization column and the minimum role per command, and stamps
// the requester.
func (w *tenantTableWebhook) Default(ctx context.Context, t *tenancyv1.TenantTable) error {
	t.Spec = t.Spec.WithDefaults()
	return w.defaultMetadata(ctx, t)
}

// ValidateCreate refuses a table in a reserved schema (the CRD refuses it too; this holds should
// the CRD lag behind the operator), and a second TenantTable for the same table: two would fight
// over its policies.
func (w *tenantTableWebhook) ValidateCreate(ctx context.Context, t *tenancyv1.TenantTable) (admission.Warnings, error) {
	errs := applicationSchema(schemaPath, t.Spec.Schema)
	var list tenancyv1.TenantTableList
	if err := w.live.List(ctx, &list); err != nil { // rare, and two at once must not both pass
		return nil, fmt.Errorf("listing tenant tables: %w", err)
	}
	for _, other := range list.Items {
		if other.Name != t.Name && other.Spec.Schema == t.Spec.Schema && other.Spec.Table == t.Spec.Table {
			errs = append(errs, field.Invalid(field.NewPath("spec", "table"), t.Spec.Table,
				fmt.Sprintf("%s.%s is already protected by TenantTable %s", t.Spec.Schema, t.Spec.Table, other.Name)))
		}
	}
	return nil, w.refuse(t, errs, false)
}

// ValidateUpdate is not called (the webhook configuration leaves updates out): schema and table
// are immutable (CEL in the CRD), and columns and roles are the CRD's to validate.
func (w *tenantTableWebhook) ValidateUpdate(context.Context, *tenancyv1.TenantTable, *tenancyv1.TenantTable) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete records who asked.
func (w *tenantTableWebhook) ValidateDelete(ctx context.Context, t *tenancyv1.TenantTable) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	w.recordDeletion(ctx, t, "", "tenanttable/"+t.Name, who)
	return nil, nil
}
