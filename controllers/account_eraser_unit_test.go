package controllers

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// erasingStore hands out accounts to erase and records which were erased.
type erasingStore struct {
	accounts []db.AccountToErase
	erased   []string
}

func (s *erasingStore) AccountsToErase(context.Context, int) ([]db.AccountToErase, error) {
	return s.accounts, nil
}

func (s *erasingStore) EraseAccount(_ context.Context, userID string, _ db.Actor, _ db.ErasureNotice) (bool, error) {
	s.erased = append(s.erased, userID)
	return true, nil
}

func TestAccountEraserDeletesMembershipsFirstAndOneStuckAccountHoldsUpNoOther(t *testing.T) {
	member := func(ns, name, user string) *tenancyv1.Membership {
		return &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name)},
			Spec: tenancyv1.MembershipSpec{User: user}}
	}
	var deleted []string
	c := fake.NewClientBuilder().WithScheme(newScheme(t)).
		WithObjects(
			member("acme", "stuck", "stuck@example.com"),
			member("acme", "leaver", "Leaver@Example.com"),
			member("globex", "leaver", "leaver@example.com"),
			member("acme", "stays", "stays@example.com"),
		).
		WithIndex(&tenancyv1.Membership{}, tenant.MembershipUser, func(o client.Object) []string {
			return []string{db.NormalizeEmail(o.(*tenancyv1.Membership).Spec.User)}
		}).
		WithInterceptorFuncs(interceptor.Funcs{Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if obj.GetName() == "stuck" {
				return errors.New("admission webhook denied the request")
			}
			deleted = append(deleted, obj.GetNamespace()+"/"+obj.GetName())
			return c.Delete(ctx, obj, opts...)
		}}).
		Build()
	store := &erasingStore{accounts: []db.AccountToErase{
		{UserID: "stuck-id", Email: "stuck@example.com"},
		{UserID: "leaver-id", Email: "leaver@example.com"},
		{UserID: "gone-id", Email: "gone@example.com"},
	}}
	var logged []string
	eraser := &AccountEraser{Client: c, Store: store, Interval: time.Second,
		Log: funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})}

	if err := eraser.erasePending(t.Context()); err != nil {
		t.Fatalf("a pass with one stuck account: %v", err)
	}
	slices.Sort(deleted)
	if want := []string{"acme/leaver", "globex/leaver"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted %v, want the leaver's Memberships in every namespace, whatever the case of spec.user", deleted)
	}
	if !slices.Equal(store.erased, []string{"gone-id"}) {
		t.Errorf("erased %v, want only the account without Memberships left", store.erased)
	}
	if !slices.ContainsFunc(logged, func(l string) bool { return strings.Contains(l, "admission webhook denied") }) {
		t.Errorf("the stuck account's error is not logged: %v", logged)
	}

	store.erased = nil
	if err := eraser.erasePending(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(store.erased, "leaver-id") || slices.Contains(store.erased, "stuck-id") {
		t.Errorf("second pass erased %v, want the leaver (Memberships gone) and not the stuck account", store.erased)
	}
	var left tenancyv1.MembershipList
	if err := c.List(t.Context(), &left); err != nil {
		t.Fatal(err)
	}
	if len(left.Items) != 2 {
		t.Errorf("%d Memberships left, want the stuck one and the one of someone else", len(left.Items))
	}
}
