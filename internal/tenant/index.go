package tenant

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

const (
	// OrganizationNamespace indexes Organizations by the namespace they name (spec.namespace or
	// their own name), so that namespaced objects find their organization before it has labelled
	// the namespace.
	OrganizationNamespace = "tenancy.dev/organization-namespace"
	// MembershipUser indexes Memberships by their user's normalised email: the webhooks find a
	// requester's roles, and duplicates, without listing a whole organization.
	MembershipUser = "tenancy.dev/membership-user"
	// MembershipOwner indexes the organization-wide Owner Memberships under "true", so that the
	// last-Owner guard counts Owners without listing every member.
	MembershipOwner = "tenancy.dev/membership-owner"
)

// Setup registers every index with mgr. Call it once, before the controllers and webhooks start.
func Setup(ctx context.Context, mgr ctrl.Manager) error {
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &tenancyv1.Organization{}, OrganizationNamespace, func(obj client.Object) []string {
		return []string{obj.(*tenancyv1.Organization).NamespaceName()}
	}); err != nil {
		return fmt.Errorf("indexing organizations by namespace: %w", err)
	}
	if err := indexer.IndexField(ctx, &tenancyv1.Membership{}, MembershipUser, func(obj client.Object) []string {
		return []string{db.NormalizeEmail(obj.(*tenancyv1.Membership).Spec.User)}
	}); err != nil {
		return fmt.Errorf("indexing memberships by user: %w", err)
	}
	if err := indexer.IndexField(ctx, &tenancyv1.Membership{}, MembershipOwner, func(obj client.Object) []string {
		if m := obj.(*tenancyv1.Membership); m.Spec.Role == tenancyv1.RoleOwner && m.Spec.Project == "" {
			return []string{"true"}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing organization owners: %w", err)
	}
	return nil
}

// OrganizationsNaming lists the Organizations whose namespace is ns.
func OrganizationsNaming(ctx context.Context, c client.Reader, ns string) ([]tenancyv1.Organization, error) {
	var orgs tenancyv1.OrganizationList
	if err := c.List(ctx, &orgs, client.MatchingFields{OrganizationNamespace: ns}); err != nil {
		return nil, fmt.Errorf("listing organizations of namespace %s: %w", ns, err)
	}
	return orgs.Items, nil
}

// MembershipsOf lists the Memberships of user (any spelling of the email) in namespace ns. The
// items are the cache's own: callers must not modify them.
func MembershipsOf(ctx context.Context, c client.Reader, ns, user string) ([]tenancyv1.Membership, error) {
	var list tenancyv1.MembershipList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{MembershipUser: db.NormalizeEmail(user)},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing memberships of %s in %s: %w", user, ns, err)
	}
	return list.Items, nil
}

// Owners lists the organization-wide Owner Memberships in namespace ns. The items are the
// cache's own: callers must not modify them.
func Owners(ctx context.Context, c client.Reader, ns string) ([]tenancyv1.Membership, error) {
	var list tenancyv1.MembershipList
	if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{MembershipOwner: "true"},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the owners in %s: %w", ns, err)
	}
	return list.Items, nil
}
