package webhooks

import (
	"context"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// +kubebuilder:webhook:path=/mutate-tenancy-dev-v1alpha1-apikey,mutating=true,failurePolicy=fail,sideEffects=None,groups=tenancy.dev,resources=apikeys,verbs=create;update,versions=v1alpha1,name=mapikey.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","tenancy-system"]}]}}`
// +kubebuilder:webhook:path=/validate-tenancy-dev-v1alpha1-apikey,mutating=false,failurePolicy=fail,sideEffects=NoneOnDryRun,groups=tenancy.dev,resources=apikeys,verbs=create;update;delete,versions=v1alpha1,name=vapikey.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","tenancy-system"]}]}}`

// apiKeyWebhook defaults and validates APIKeys.
type apiKeyWebhook struct{ *admitter }

var expiresAtPath = field.NewPath("spec", "expiresAt")

// Default fills spec.secretName (when the name is known; with generateName the controller
// derives it), gives a new key without spec.expiresAt the longest expiry allowed, a year ahead,
// and stamps the requester. Only on create: an update without spec.expiresAt removes it, which
// the validator refuses rather than this quietly putting a later one back.
func (w *apiKeyWebhook) Default(ctx context.Context, k *tenancyv1.APIKey) error {
	if k.Spec.SecretName == "" && k.Name != "" {
		k.Spec.SecretName = k.SecretNameOrDefault()
	}
	create, err := creating(ctx)
	if err != nil {
		return err
	}
	if create && k.Spec.ExpiresAt == nil {
		k.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(MaxAPIKeyLifetime).Truncate(time.Second)}
	}
	return w.defaultMetadata(ctx, k)
}

// ValidateCreate checks the organization, project, the expiry, authority and the API keys quota.
func (w *apiKeyWebhook) ValidateCreate(ctx context.Context, k *tenancyv1.APIKey) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	t, err := w.orgNamespaceOf(ctx, k.Namespace)
	if err != nil {
		return nil, err
	}
	if errs := boundNamespace(k.Namespace, t); len(errs) > 0 {
		return nil, w.refuse(k, errs, false)
	}
	errs := append(expiryRequired(expiresAtPath, k.Spec.ExpiresAt), validExpiry(expiresAtPath, k.Spec.ExpiresAt, time.Now())...)
	if k.Spec.Project != "" {
		p, err := w.project(ctx, k.Namespace, k.Spec.Project)
		if err != nil {
			return nil, err
		}
		errs = append(errs, existingProject(k.Spec.Project, p, t.org.Name)...)
	}
	denied, err := w.authorizeIn(ctx, who, t, k.Namespace, k.Spec.Project, roleChange{kind: "API key", verb: "create", new: k.Spec.Role})
	if err != nil {
		return nil, err
	}
	errs = append(errs, denied...)
	over, err := w.admitQuota(ctx, t.org, k, k.Name, w.apiKeysQuota(t.org), who, errs)
	if err != nil {
		return nil, err
	}
	return nil, w.refuse(k, append(errs, over...), false)
}

// ValidateUpdate checks that the expiry stays, a changed one, and authority.
func (w *apiKeyWebhook) ValidateUpdate(ctx context.Context, old, k *tenancyv1.APIKey) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	if errs := finalizerKept(old, k, who); len(errs) > 0 || k.DeletionTimestamp != nil {
		return nil, w.refuse(k, errs, false) // being deleted: only metadata can change
	}
	now := time.Now()
	errs := expiryKept(expiresAtPath, old.Spec.ExpiresAt, k.Spec.ExpiresAt, now)
	if len(errs) == 0 && !k.Spec.ExpiresAt.Equal(old.Spec.ExpiresAt) {
		errs = validExpiry(expiresAtPath, k.Spec.ExpiresAt, now)
	}
	denied, err := w.authorize(ctx, who, k.Namespace, k.Spec.Project, roleChange{kind: "API key", verb: "change", old: old.Spec.Role, new: k.Spec.Role})
	if err != nil {
		return nil, err
	}
	return nil, w.refuse(k, append(errs, denied...), false)
}

// ValidateDelete checks authority and records who asked.
func (w *apiKeyWebhook) ValidateDelete(ctx context.Context, k *tenancyv1.APIKey) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	denied, err := w.authorize(ctx, who, k.Namespace, k.Spec.Project, roleChange{kind: "API key", verb: "delete", old: k.Spec.Role})
	if err != nil || len(denied) > 0 {
		return nil, errors.Join(err, w.refuse(k, denied, true))
	}
	w.recordDeletion(ctx, k, k.Namespace, "apikey/"+k.Name, who)
	return nil, nil
}
