package webhooks

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// +kubebuilder:webhook:path=/mutate-tenancy-dev-v1alpha1-organization,mutating=true,failurePolicy=fail,sideEffects=None,groups=tenancy.dev,resources=organizations,verbs=create;update,versions=v1alpha1,name=morganization.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-tenancy-dev-v1alpha1-organization,mutating=false,failurePolicy=fail,sideEffects=NoneOnDryRun,groups=tenancy.dev,resources=organizations,verbs=create;update;delete,versions=v1alpha1,name=vorganization.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5

// organizationWebhook defaults and validates Organizations. Who may create one is Kubernetes
// RBAC's decision (platform teams, and authd's signup); who may have one adopt a namespace that
// already exists is the webhook's: platform admins only.
type organizationWebhook struct{ *admitter }

var namespaceSpecPath = field.NewPath("spec", "namespace")

// Default fills spec.namespace, spec.tier and spec.deletionPolicy and stamps the requester.
func (w *organizationWebhook) Default(ctx context.Context, org *tenancyv1.Organization) error {
	org.Spec.Namespace = org.NamespaceName()
	if org.Spec.Tier == "" {
		org.Spec.Tier = tenancyv1.TierFree
	}
	if org.Spec.DeletionPolicy == "" {
		org.Spec.DeletionPolicy = tenancyv1.DeletionPolicyRetain
	}
	return w.defaultMetadata(ctx, org)
}

// ValidateCreate refuses a namespace that belongs to the cluster, the operator or another
// organization, an existing namespace unless a platform admin asks, and a row id chosen by
// anyone else.
func (w *organizationWebhook) ValidateCreate(ctx context.Context, org *tenancyv1.Organization) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	rowIDErrs := choosingRowID(who, "organization", nil, org, "")
	ns := org.NamespaceName()
	if tenant.ReservedNamespace(ns, w.settings.OperatorNamespace) {
		return nil, w.refuse(org, append(field.ErrorList{field.Forbidden(namespaceSpecPath, fmt.Sprintf(
			"namespace %s belongs to the cluster or the operator; choose another", ns))}, rowIDErrs...), false)
	}
	// From the API server: two Organizations created a moment apart must not both get the
	// namespace, a signup must not win a race with the namespace's creation, and creating an
	// Organization is rare.
	claimants, err := w.liveOrganizationsNaming(ctx, ns)
	if err != nil {
		return nil, err
	}
	var errs field.ErrorList
	for _, other := range claimants {
		if other.Name != org.Name {
			errs = append(errs, field.Invalid(namespaceSpecPath, ns, "already belongs to organization "+other.Name))
		}
	}
	namespace := &corev1.Namespace{}
	switch err := w.live.Get(ctx, client.ObjectKey{Name: ns}, namespace); {
	case apierrors.IsNotFound(err):
		return nil, w.refuse(org, append(errs, rowIDErrs...), false)
	case err != nil:
		return nil, fmt.Errorf("getting namespace %s: %w", ns, err)
	}
	owner := namespace.Labels[tenancyv1.OrganizationLabel]
	if owner != "" && owner != org.Name && len(errs) == 0 {
		errs = append(errs, field.Invalid(namespaceSpecPath, ns, "is bound to organization "+owner))
	}
	// A namespace being deleted is not adopted: the controller waits until it is gone and creates
	// it anew. One already labelled for this organization is its own.
	if len(errs) == 0 && owner != org.Name && namespace.DeletionTimestamp.IsZero() {
		errs = adoptionByPlatformAdmin(ns, who)
	}
	return nil, w.refuse(org, append(errs, rowIDErrs...), false)
}

// adoptionByPlatformAdmin refuses anyone but a named platform admin having an Organization adopt
// the existing namespace ns: its Owners would read the namespace's Secrets, and the RoleBindings
// already there stay. The operator's service accounts do not count: authd creates Organizations
// only for signup, which must get a new namespace, and the manager creates none.
func adoptionByPlatformAdmin(ns string, who requester) field.ErrorList {
	if who.namedAdmin {
		return nil
	}
	return field.ErrorList{field.Forbidden(namespaceSpecPath, fmt.Sprintf(
		"namespace %s already exists; only a platform admin may adopt an existing namespace into an organization", ns))}
}

// ValidateUpdate refuses a row id chosen by anyone but a platform admin or changed once the row
// exists, and warns when a new tier allows fewer projects, members or API keys than the
// organization has: those stay, new ones are refused.
func (w *organizationWebhook) ValidateUpdate(ctx context.Context, old, org *tenancyv1.Organization) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	if errs := choosingRowID(who, "organization", old, org, old.Status.ID); len(errs) > 0 {
		return nil, w.refuse(org, errs, false)
	}
	if org.DeletionTimestamp != nil || old.Spec.Tier == org.Spec.Tier {
		return nil, nil
	}
	ns, limits := org.NamespaceName(), org.Spec.Tier.Limits()
	projects, _, err := w.projects.Count(ctx, ns, "")
	if err != nil {
		return nil, err
	}
	members, _, err := w.members.Count(ctx, ns, "")
	if err != nil {
		return nil, err
	}
	keys, _, err := w.apiKeys.Count(ctx, ns, "")
	if err != nil {
		return nil, err
	}
	var warnings admission.Warnings
	for _, q := range []struct {
		what       string
		have, most int
	}{{"projects", projects, limits.Projects}, {"members", members, limits.Members}, {"API keys", keys, limits.APIKeys}} {
		if q.most > 0 && q.have > q.most {
			warnings = append(warnings, fmt.Sprintf("%s has %d %s, more than the %d that tier %s allows: they stay, but new ones will be refused",
				org.Name, q.have, q.what, q.most, org.Spec.Tier))
		}
	}
	return warnings, nil
}

// ValidateDelete records who asked: deleting an Organization is how a tenant ends.
func (w *organizationWebhook) ValidateDelete(ctx context.Context, org *tenancyv1.Organization) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	w.recordDeletion(ctx, org, org.NamespaceName(), "organization/"+org.Name, who)
	return nil, nil
}
