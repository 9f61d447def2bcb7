package webhooks

import (
	"context"
	"errors"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// +kubebuilder:webhook:path=/mutate-tenancy-dev-v1alpha1-project,mutating=true,failurePolicy=fail,sideEffects=None,groups=tenancy.dev,resources=projects,verbs=create;update,versions=v1alpha1,name=mproject.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","tenancy-system"]}]}}`
// +kubebuilder:webhook:path=/validate-tenancy-dev-v1alpha1-project,mutating=false,failurePolicy=fail,sideEffects=NoneOnDryRun,groups=tenancy.dev,resources=projects,verbs=create;update;delete,versions=v1alpha1,name=vproject.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","tenancy-system"]}]}}`

// projectWebhook defaults and validates Projects.
type projectWebhook struct{ *admitter }

// Default stamps the requester; a Project has no other defaults.
func (w *projectWebhook) Default(ctx context.Context, p *tenancyv1.Project) error {
	return w.defaultMetadata(ctx, p)
}

// ValidateCreate checks the organization, the projects quota, that the requester is an
// organization Admin, and that only a platform admin chooses the row id.
func (w *projectWebhook) ValidateCreate(ctx context.Context, p *tenancyv1.Project) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	t, err := w.orgNamespaceOf(ctx, p.Namespace)
	if err != nil {
		return nil, err
	}
	if errs := boundNamespace(p.Namespace, t); len(errs) > 0 {
		return nil, w.refuse(p, errs, false)
	}
	denied, err := w.authorizeIn(ctx, who, t, p.Namespace, "", roleChange{kind: "project", verb: "create"})
	if err != nil {
		return nil, err
	}
	denied = append(denied, choosingRowID(who, "project", nil, p, "")...)
	over, err := w.admitQuota(ctx, t.org, p, p.Name, w.projectsQuota(t.org), who, denied)
	if err != nil {
		return nil, err
	}
	return nil, w.refuse(p, append(denied, over...), false)
}

// ValidateUpdate checks that the requester is an organization Admin, and that only a platform
// admin chooses the row id, before the row exists.
func (w *projectWebhook) ValidateUpdate(ctx context.Context, old, p *tenancyv1.Project) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	if errs := finalizerKept(old, p, who); len(errs) > 0 || p.DeletionTimestamp != nil {
		return nil, w.refuse(p, errs, false) // being deleted: only metadata can change
	}
	denied, err := w.authorize(ctx, who, p.Namespace, "", roleChange{kind: "project", verb: "change"})
	if err != nil {
		return nil, err
	}
	return nil, w.refuse(p, append(denied, choosingRowID(who, "project", old, p, old.Status.ID)...), false)
}

// ValidateDelete checks that the requester is an organization Admin and records who asked.
func (w *projectWebhook) ValidateDelete(ctx context.Context, p *tenancyv1.Project) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	denied, err := w.authorize(ctx, who, p.Namespace, "", roleChange{kind: "project", verb: "delete"})
	if err != nil || len(denied) > 0 {
		return nil, errors.Join(err, w.refuse(p, denied, true))
	}
	w.recordDeletion(ctx, p, p.Namespace, "project/"+p.Name, who)
	return nil, nil
}
