package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// requestsForOrganizationsNaming maps an object to the Organizations that name its namespace
// (for a Namespace, the namespace itself).
func requestsForOrganizationsNaming(c client.Reader) func(ctx context.Context, obj client.Object) []reconcile.Request {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = obj.GetName()
		}
		orgs, err := tenant.OrganizationsNaming(ctx, c, ns)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Mapping an object to its organizations", "namespace", ns)
			return nil
		}
		requests := make([]reconcile.Request, 0, len(orgs))
		for _, org := range orgs {
			requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&org)})
		}
		return requests
	}
}

// requestsForScopedObjects maps an Organization to every object of the list's kind in its
// namespace, and a Project to those scoped to it (projectScoped kinds only).
func requestsForScopedObjects(c client.Reader, newList func() client.ObjectList) func(ctx context.Context, obj client.Object) []reconcile.Request {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		namespace, project := obj.GetNamespace(), obj.GetName()
		if org, ok := obj.(*tenancyv1.Organization); ok {
			namespace, project = org.NamespaceName(), ""
		}
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Listing objects to wake", "namespace", namespace)
			return nil
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Reading listed objects", "namespace", namespace)
			return nil
		}
		var requests []reconcile.Request
		for _, item := range items {
			o := item.(client.Object)
			if project != "" {
				if scoped, ok := o.(projectScoped); !ok || scoped.ProjectName() != project {
					continue
				}
			}
			requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
		}
		return requests
	}
}
