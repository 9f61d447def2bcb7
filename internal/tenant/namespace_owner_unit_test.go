package tenant

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var created = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func organization(name, namespace string, age time.Duration) tenancyv1.Organization {
	return tenancyv1.Organization{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created.Add(-age))},
		Spec:       tenancyv1.OrganizationSpec{Namespace: namespace},
	}
}

func labelled(name, org string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if org != "" {
		ns.Labels = map[string]string{tenancyv1.OrganizationLabel: org}
	}
	return ns
}

// claimantsOf lists exactly orgs, and counts its calls.
func claimantsOf(calls *int, orgs ...tenancyv1.Organization) ClaimantsFunc {
	return func(context.Context, string) ([]tenancyv1.Organization, error) {
		*calls++
		return orgs, nil
	}
}

func TestOwnerOfPrefersTheLabelThenTheOldestThenTheName(t *testing.T) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tenancyv1.AddToScheme(scheme))

	// acme binds namespace team by its label; it is the youngest of those that name team.
	acme := organization("acme", "team", 0)
	oldest := organization("globex", "team", time.Hour)
	// zeta and alpha are as old as each other: the name decides.
	zeta := organization("zeta", "shared", time.Minute)
	alpha := organization("alpha", "shared", time.Minute)
	// elsewhere is named by shared's label but names another namespace.
	elsewhere := organization("elsewhere", "other", 2*time.Hour)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(&acme, &oldest, &zeta, &alpha, &elsewhere).Build()

	cases := []struct {
		name      string
		ns        string
		namespace *corev1.Namespace
		claimants []tenancyv1.Organization
		want      string
		wantBound bool
		// wantListed says whether the claimants had to be listed.
		wantListed bool
	}{
		{"the label binds, over an older claimant", "team", labelled("team", "acme"), []tenancyv1.Organization{oldest, acme}, "acme", true, false},
		{"no label: the oldest claimant", "team", labelled("team", ""), []tenancyv1.Organization{acme, oldest}, "globex", false, true},
		{"no namespace yet: the oldest claimant", "team", nil, []tenancyv1.Organization{acme, oldest}, "globex", false, true},
		{"equally old: the first by name", "shared", labelled("shared", ""), []tenancyv1.Organization{zeta, alpha}, "alpha", false, true},
		{"equally old, listed the other way round", "shared", labelled("shared", ""), []tenancyv1.Organization{alpha, zeta}, "alpha", false, true},
		{"a label naming an Organization of another namespace binds nothing", "shared", labelled("shared", "elsewhere"), []tenancyv1.Organization{zeta, alpha}, "alpha", false, true},
		{"a label naming a deleted Organization binds nothing", "team", labelled("team", "gone"), []tenancyv1.Organization{acme}, "acme", false, true},
		{"no claimant", "empty", labelled("empty", ""), nil, "", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			owner, err := OwnerOf(context.Background(), c, tc.ns, tc.namespace, claimantsOf(&calls, tc.claimants...))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if owner.Organization != nil {
				got = owner.Organization.Name
			}
			if got != tc.want || owner.Bound != tc.wantBound {
				t.Errorf("owner %q (bound %t), want %q (bound %t)", got, owner.Bound, tc.want, tc.wantBound)
			}
			if listed := calls > 0; listed != tc.wantListed {
				t.Errorf("claimants listed: %t, want %t (the webhooks' listing may ask the API server)", listed, tc.wantListed)
			}
		})
	}
}

func TestOwnerOfReportsWhatItCannotRead(t *testing.T) {
	broken := errors.New("cache unavailable")
	failingGet := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return broken
		},
	}).Build()
	calls := 0
	if _, err := OwnerOf(context.Background(), failingGet, "team", labelled("team", "acme"), claimantsOf(&calls)); !errors.Is(err, broken) {
		t.Errorf("reading the labelled Organization failed: error %v, want %v", err, broken)
	}
	failingList := func(context.Context, string) ([]tenancyv1.Organization, error) { return nil, broken }
	if _, err := OwnerOf(context.Background(), failingGet, "team", nil, failingList); !errors.Is(err, broken) {
		t.Errorf("listing the claimants failed: error %v, want %v", err, broken)
	}
}

func TestOlderFirstIsATotalOrder(t *testing.T) {
	a, b := organization("a", "x", time.Minute), organization("b", "x", time.Minute)
	if olderFirst(a, b) >= 0 || olderFirst(b, a) <= 0 || olderFirst(a, a) != 0 {
		t.Error("equally old Organizations are not ordered by name")
	}
	older := organization("z", "x", time.Hour)
	if olderFirst(older, a) >= 0 {
		t.Error("an older Organization does not come first whatever its name")
	}
}
