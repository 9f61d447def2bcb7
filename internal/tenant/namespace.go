package tenant

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// ReservedNamespace reports whether a namespace belongs to the cluster or the operator, so that no
// organization may own it.
func ReservedNamespace(name, operatorNamespace string) bool {
	return name == operatorNamespace || name == "default" || strings.HasPrefix(name, "kube-")
}

// Owner is the Organization that owns a namespace.
type Owner struct {
	// Organization is nil when no Organization owns the namespace.
	Organization *tenancyv1.Organization
	// Bound says that the namespace's tenancy.dev/organization label names Organization. An
	// Organization that only names the namespace owns it before its controller has labelled it:
	// GitOps applies a tenant's objects in one pass.
	Bound bool
}

// ClaimantsFunc lists the Organizations whose namespace is ns (spec.namespace, or their name).
type ClaimantsFunc func(ctx context.Context, ns string) ([]tenancyv1.Organization, error)

// CachedClaimants lists the claimants through the OrganizationNamespace index of c.
func CachedClaimants(c client.Reader) ClaimantsFunc {
	return func(ctx context.Context, ns string) ([]tenancyv1.Organization, error) {
		return OrganizationsNaming(ctx, c, ns)
	}
}

// OwnerOf finds the Organization that owns namespace ns, given the namespace as read (nil when it
// does not exist). The controllers and the webhooks both decide by it, so that an object is never
// admitted into one organization and reconciled into another:
//
//  1. the Organization that the namespace's tenancy.dev/organization label names, read through
//     c, when its spec names ns back: a label put on some other namespace by hand binds nothing;
//  2. otherwise the oldest of the Organizations that claimants lists, and among those created in
//     the same second the first by name, so that every replica and every retry picks the same.
//
// claimants is called only when the label does not decide.
func OwnerOf(ctx context.Context, c client.Reader, ns string, namespace *corev1.Namespace, claimants ClaimantsFunc) (Owner, error) {
	if name := labelledOrganization(namespace); name != "" {
		org := &tenancyv1.Organization{}
		err := c.Get(ctx, client.ObjectKey{Name: name}, org)
		if err == nil && org.NamespaceName() == ns {
			return Owner{Organization: org, Bound: true}, nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return Owner{}, fmt.Errorf("getting organization %s: %w", name, err)
		}
	}
	orgs, err := claimants(ctx, ns)
	if err != nil || len(orgs) == 0 {
		return Owner{}, err
	}
	first := slices.MinFunc(orgs, olderFirst)
	return Owner{Organization: &first}, nil
}

func labelledOrganization(namespace *corev1.Namespace) string {
	if namespace == nil {
		return ""
	}
	return namespace.Labels[tenancyv1.OrganizationLabel]
}

// olderFirst orders Organizations by creation, then by name: creation timestamps have whole
// seconds, and two Organizations applied together often share one.
func olderFirst(a, b tenancyv1.Organization) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}
