package webhooks

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// +kubebuilder:webhook:path=/mutate-tenancy-dev-v1alpha1-accountsuspension,mutating=true,failurePolicy=fail,sideEffects=None,groups=tenancy.dev,resources=accountsuspensions,verbs=create;update,versions=v1alpha1,name=maccountsuspension.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-tenancy-dev-v1alpha1-accountsuspension,mutating=false,failurePolicy=fail,sideEffects=NoneOnDryRun,groups=tenancy.dev,resources=accountsuspensions,verbs=create;delete,versions=v1alpha1,name=vaccountsuspension.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5

// accountSuspensionWebhook stamps and guards AccountSuspensions. Kubernetes RBAC decides who may
// write them; the webhook holds even where a ClusterRole grants more than it should: disabling
// or enabling accounts is for platform admins and the operator only.
type accountSuspensionWebhook struct{ *admitter }

// Default adds the finalizer and stamps the requester.
func (w *accountSuspensionWebhook) Default(ctx context.Context, s *tenancyv1.AccountSuspension) error {
	return w.defaultMetadata(ctx, s)
}

// ValidateCreate admits platform admins only.
func (w *accountSuspensionWebhook) ValidateCreate(ctx context.Context, s *tenancyv1.AccountSuspension) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	return nil, w.refuse(s, platformAdminOnly(who, "disable"), false)
}

// ValidateUpdate is not called (the webhook configuration leaves updates out): spec.email is
// immutable (CEL in the CRD) and spec.reason is free text.
func (w *accountSuspensionWebhook) ValidateUpdate(context.Context, *tenancyv1.AccountSuspension, *tenancyv1.AccountSuspension) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete admits platform admins only, and records who asked. authd's admin API deletes
// for a platform admin whom it names in tenancy.dev/last-changed-by: the audit log keeps that name.
func (w *accountSuspensionWebhook) ValidateDelete(ctx context.Context, s *tenancyv1.AccountSuspension) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	if errs := platformAdminOnly(who, "enable"); len(errs) > 0 {
		return nil, w.refuse(s, errs, true)
	}
	if !who.operator {
		w.recordDeletion(ctx, s, "", "accountsuspension/"+s.Name, who)
	}
	return nil, nil
}

// platformAdminOnly refuses requesters who are not platform admins.
func platformAdminOnly(who requester, verb string) field.ErrorList {
	if who.platformAdmin {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("spec", "email"), fmt.Sprintf(
		"%s is not a platform admin (--platform-admin-users, --platform-admin-groups): only they %s accounts", who.name(), verb))}
}
