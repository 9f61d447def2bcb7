package webhooks

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// +kubebuilder:webhook:path=/mutate-tenancy-dev-v1alpha1-membership,mutating=true,failurePolicy=fail,sideEffects=None,groups=tenancy.dev,resources=memberships,verbs=create;update,versions=v1alpha1,name=mmembership.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","tenancy-system"]}]}}`
// +kubebuilder:webhook:path=/validate-tenancy-dev-v1alpha1-membership,mutating=false,failurePolicy=fail,sideEffects=NoneOnDryRun,groups=tenancy.dev,resources=memberships,verbs=create;update;delete,versions=v1alpha1,name=vmembership.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","tenancy-system"]}]}}`

// membershipWebhook defaults and validates Memberships.
type membershipWebhook struct{ *admitter }

// Default fills spec.role, normalises spec.user and stamps the requester.
func (w *membershipWebhook) Default(ctx context.Context, m *tenancyv1.Membership) error {
	m.Spec.Role = m.RoleOrDefault()
	user, err := storedEmail(ctx, m.Spec.User)
	if err != nil {
		return err
	}
	m.Spec.User = user
	return w.defaultMetadata(ctx, m)
}

// ValidateCreate checks the organization, project, duplicates, the members quota, authority and
// who vouches for the email.
func (w *membershipWebhook) ValidateCreate(ctx context.Context, m *tenancyv1.Membership) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	t, err := w.orgNamespaceOf(ctx, m.Namespace)
	if err != nil {
		return nil, err
	}
	if errs := boundNamespace(m.Namespace, t); len(errs) > 0 {
		return nil, w.refuse(m, errs, false)
	}
	errs, err := w.structure(ctx, m, t)
	if err != nil {
		return nil, err
	}
	denied, err := w.authorizeIn(ctx, who, t, m.Namespace, m.Spec.Project,
		roleChange{kind: "membership", verb: "create", new: m.RoleOrDefault(), self: who.email != "" && who.email == db.NormalizeEmail(m.Spec.User)})
	if err != nil {
		return nil, err
	}
	errs = append(errs, denied...)
	errs = append(errs, vouching(who, nil, m)...)
	over, err := w.admitQuota(ctx, t.org, m, db.NormalizeEmail(m.Spec.User), w.membersQuota(t.org), who, errs)
	if err != nil {
		return nil, err
	}
	return nil, w.refuse(m, append(errs, over...), false)
}

// structure checks what a new membership needs from its organization: an existing project and no
// other membership of the user in the same scope. (Room in the members quota is checked last.)
func (w *membershipWebhook) structure(ctx context.Context, m *tenancyv1.Membership, t orgNamespace) (field.ErrorList, error) {
	var errs field.ErrorList
	in := roleScope{t.org.Name, m.Spec.Project}
	if m.Spec.Project != "" {
		p, err := w.project(ctx, m.Namespace, m.Spec.Project)
		if err != nil {
			return nil, err
		}
		errs = append(errs, existingProject(m.Spec.Project, p, t.org.Name)...)
	}
	held, err := tenant.MembershipsOf(ctx, w.cache, m.Namespace, m.Spec.User)
	if err != nil {
		return nil, err
	}
	for _, other := range held {
		if other.DeletionTimestamp == nil && other.UID != m.UID && other.Spec.Project == m.Spec.Project {
			errs = append(errs, field.Invalid(userPath, m.Spec.User,
				"already has a role in "+in.String()+" through Membership "+other.Name+"; change that one's spec.role instead"))
		}
	}
	return errs, nil
}

// ValidateUpdate checks authority over role changes and keeps the last Owner.
func (w *membershipWebhook) ValidateUpdate(ctx context.Context, old, m *tenancyv1.Membership) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	if errs := finalizerKept(old, m, who); len(errs) > 0 || m.DeletionTimestamp != nil {
		return nil, w.refuse(m, errs, false) // being deleted: only metadata can change
	}
	t, err := w.orgNamespaceOf(ctx, m.Namespace)
	if err != nil {
		return nil, err
	}
	denied, err := w.authorizeIn(ctx, who, t, m.Namespace, m.Spec.Project, roleChange{
		kind: "membership", verb: "change",
		old: old.RoleOrDefault(), new: m.RoleOrDefault(),
		self: who.email != "" && who.email == db.NormalizeEmail(m.Spec.User),
	})
	denied = append(denied, vouching(who, old, m)...)
	if err != nil || len(denied) > 0 {
		return nil, errors.Join(err, w.refuse(m, denied, false))
	}
	if m.Spec.Role != tenancyv1.RoleOwner {
		if _, err := w.keepsAnOwner(ctx, old, t, who, false); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// ValidateDelete checks authority, keeps the last Owner and records who asked.
func (w *membershipWebhook) ValidateDelete(ctx context.Context, m *tenancyv1.Membership) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	t, err := w.orgNamespaceOf(ctx, m.Namespace)
	if err != nil {
		return nil, err
	}
	denied, err := w.authorizeIn(ctx, who, t, m.Namespace, m.Spec.Project,
		roleChange{kind: "membership", verb: "delete", old: m.RoleOrDefault()})
	if err != nil || len(denied) > 0 {
		return nil, errors.Join(err, w.refuse(m, denied, true))
	}
	recorded, err := w.keepsAnOwner(ctx, m, t, who, true)
	if err != nil {
		return nil, err
	}
	if !recorded {
		w.recordDeletion(ctx, m, m.Namespace, "membership/"+m.Name, who)
	}
	return nil, nil
}
