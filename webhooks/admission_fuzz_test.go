package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// admissionRecords admits every Owner removal, counts quotas from the cache alone and forgets
// deletions: the fuzz test is about decoding, not about the database.
type admissionRecords struct{}

func (admissionRecords) AdmitQuota(_ context.Context, q db.QuotaAdmission, cache func([]string) (int, []string, error)) (int, bool, error) {
	used, _, err := cache(nil)
	return used, used < q.Limit, err
}

func (admissionRecords) AdmitOwnerRemoval(context.Context, db.OwnerRemoval) (bool, error) {
	return true, nil
}
func (admissionRecords) RecordDeletion(context.Context, db.AdmissionRecord) error { return nil }

// fuzzKind is one kind's mutating and validating webhook, built the way register builds them.
type fuzzKind struct {
	resource   string
	namespaced bool
	mutating   *admission.Webhook
	validating *admission.Webhook
	// decodes reports whether raw decodes into the kind.
	decodes func(raw []byte) bool
}

func newFuzzKind[T client.Object](scheme *runtime.Scheme, resource string, namespaced bool, empty T, w kindWebhook[T]) fuzzKind {
	noRecover := false
	mutating, validating := admission.WithDefaulter(scheme, w), admission.WithValidator(scheme, w)
	// A panic must reach the fuzzer, not become a 500 answer.
	mutating.RecoverPanic, validating.RecoverPanic = &noRecover, &noRecover
	decoder := admission.NewDecoder(scheme)
	return fuzzKind{resource: resource, namespaced: namespaced, mutating: mutating, validating: validating,
		decodes: func(raw []byte) bool {
			return decoder.DecodeRaw(runtime.RawExtension{Raw: raw}, empty.DeepCopyObject()) == nil
		}}
}

// fuzzWebhooks builds every kind's webhooks on an admitter whose cache holds organization acme
// (namespace acme, Pro) with project web, two Owners and alice@example.com as Admin.
func fuzzWebhooks(tb testing.TB) []fuzzKind {
	tb.Helper()
	ctx := context.Background()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tenancyv1.AddToScheme(scheme))
	member := func(name, user string, role tenancyv1.Role) *tenancyv1.Membership {
		return &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "acme"},
			Spec: tenancyv1.MembershipSpec{User: user, Role: role}}
	}
	objects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "acme", Labels: map[string]string{tenancyv1.OrganizationLabel: "acme"}}},
		&tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: "acme"}, Spec: tenancyv1.OrganizationSpec{Tier: tenancyv1.TierPro},
			Status: tenancyv1.OrganizationStatus{ID: "11111111-1111-1111-1111-111111111111", Namespace: "acme"}},
		&tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "acme"},
			Status: tenancyv1.ProjectStatus{ID: "22222222-2222-2222-2222-222222222222"}},
		member("owner-a", "owner-a@example.com", tenancyv1.RoleOwner),
		member("owner-b", "owner-b@example.com", tenancyv1.RoleOwner),
		member("alice", "alice@example.com", tenancyv1.RoleAdmin),
	}
	// The indexes tenant.Setup registers with a manager's cache.
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects...).
		WithIndex(&tenancyv1.Organization{}, tenant.OrganizationNamespace, func(o client.Object) []string {
			return []string{o.(*tenancyv1.Organization).NamespaceName()}
		}).
		// The API server's selectable field, for the webhooks' live reads.
		WithIndex(&tenancyv1.Organization{}, "spec.namespace", func(o client.Object) []string {
			return []string{o.(*tenancyv1.Organization).Spec.Namespace}
		}).
		WithIndex(&tenancyv1.Membership{}, tenant.MembershipUser, func(o client.Object) []string {
			return []string{db.NormalizeEmail(o.(*tenancyv1.Membership).Spec.User)}
		}).
		WithIndex(&tenancyv1.Membership{}, tenant.MembershipOwner, func(o client.Object) []string {
			if m := o.(*tenancyv1.Membership); m.Spec.Role == tenancyv1.RoleOwner && m.Spec.Project == "" {
				return []string{"true"}
			}
			return nil
		}).Build()
	informers := &informertest.FakeInformers{Scheme: scheme}
	census := func(obj client.Object, key func(client.Object) string) *tenant.Census {
		census, err := tenant.NewCensus(ctx, informers, obj, key)
		if err != nil {
			tb.Fatal(err)
		}
		return census
	}
	byName := func(o client.Object) string { return o.GetName() }
	a := &admitter{
		cache: c, live: c, scheme: scheme, records: admissionRecords{},
		settings: Settings{PlatformAdminGroups: []string{"system:masters"}, OperatorNamespace: "tenancy-system"},
		operator: OperatorServiceAccounts("tenancy-system"),
		members: census(&tenancyv1.Membership{}, func(o client.Object) string {
			return db.NormalizeEmail(o.(*tenancyv1.Membership).Spec.User)
		}),
		projects: census(&tenancyv1.Project{}, byName),
		apiKeys:  census(&tenancyv1.APIKey{}, byName),
	}
	return []fuzzKind{
		newFuzzKind(scheme, "organizations", false, &tenancyv1.Organization{}, &organizationWebhook{a}),
		newFuzzKind(scheme, "projects", true, &tenancyv1.Project{}, &projectWebhook{a}),
		newFuzzKind(scheme, "memberships", true, &tenancyv1.Membership{}, &membershipWebhook{a}),
		newFuzzKind(scheme, "apikeys", true, &tenancyv1.APIKey{}, &apiKeyWebhook{a}),
		newFuzzKind(scheme, "tenanttables", false, &tenancyv1.TenantTable{}, &tenantTableWebhook{a}),
		newFuzzKind(scheme, "accountsuspensions", false, &tenancyv1.AccountSuspension{}, &accountSuspensionWebhook{a}),
		newFuzzKind(scheme, "oauthclients", true, &tenancyv1.OAuthClient{}, &oauthClientWebhook{a}),
	}
}

var fuzzOperations = []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect}

// FuzzAdmission sends admission requests with arbitrary bytes as the object and the old object
// through the real decoding path of every kind's mutating and validating webhook. Whatever the
// bytes, a webhook must not panic and must answer: allowed, or refused with a 4xx code and a
// message; a create or update whose object does not decode into the kind is refused with 400.
func FuzzAdmission(f *testing.F) {
	seeds := []struct {
		kind, op   uint8
		raw, old   string
		asPlatform bool
	}{
		{0, 0, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"Organization","metadata":{"name":"globex"},"spec":{"tier":"Free"}}`, ``, true},
		{1, 0, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"Project","metadata":{"name":"api","namespace":"acme"}}`, ``, false},
		{2, 0, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"Membership","metadata":{"name":"bob","namespace":"acme"},"spec":{"user":" Bob@Example.com ","role":"Member","project":"web"}}`, ``, false},
		{2, 1, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"Membership","metadata":{"name":"owner-a","namespace":"acme"},"spec":{"user":"owner-a@example.com","role":"Admin"}}`,
			`{"apiVersion":"tenancy.dev/v1alpha1","kind":"Membership","metadata":{"name":"owner-a","namespace":"acme"},"spec":{"user":"owner-a@example.com","role":"Owner"}}`, true},
		{2, 2, ``, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"Membership","metadata":{"name":"owner-b","namespace":"acme"},"spec":{"user":"owner-b@example.com","role":"Owner"}}`, false},
		{3, 0, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"APIKey","metadata":{"name":"ci","namespace":"acme"},"spec":{"role":"Admin","expiresAt":"2999-01-01T00:00:00Z"}}`, ``, false},
		{4, 0, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"TenantTable","metadata":{"name":"notes"},"spec":{"table":"notes","access":{"select":"Owner"}}}`, ``, true},
		{1, 0, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"Membership","metadata":{"name":"wrong-kind","namespace":"acme"}}`, ``, true},
		{2, 1, `{"kind":"Membership","spec":{"user":123}}`, `not json`, false},
		{0, 0, `{}`, ``, true},
		{3, 1, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"APIKey","metadata":{"name":"ci","namespace":"acme"},"spec":{"role":"Owner"}}`, `null`, false},
		{0, 3, ``, ``, false},
		{6, 0, `{"apiVersion":"tenancy.dev/v1alpha1","kind":"OAuthClient","metadata":{"name":"cli","namespace":"acme"},"spec":{"displayName":"CLI","public":true,"redirectURIs":["http://127.0.0.1:8000/cb","com.example.cli:/cb","https://*.example.com/cb"]}}`, ``, false},
	}
	for _, s := range seeds {
		f.Add(s.kind, s.op, []byte(s.raw), []byte(s.old), s.asPlatform)
	}
	kinds := fuzzWebhooks(f)
	f.Fuzz(func(t *testing.T, kindIndex, opIndex uint8, raw, old []byte, asPlatform bool) {
		kind := kinds[int(kindIndex)%len(kinds)]
		op := fuzzOperations[int(opIndex)%len(fuzzOperations)]
		user := authenticationv1.UserInfo{Username: "alice@example.com", Groups: []string{"system:authenticated"}}
		if asPlatform {
			user = authenticationv1.UserInfo{Username: "ops", Groups: []string{"system:masters", "system:authenticated"}}
		}
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID:       "fuzz",
			Kind:      metav1.GroupVersionKind{Group: tenancyv1.GroupVersion.Group, Version: tenancyv1.GroupVersion.Version},
			Resource:  metav1.GroupVersionResource{Group: tenancyv1.GroupVersion.Group, Version: tenancyv1.GroupVersion.Version, Resource: kind.resource},
			Operation: op,
			UserInfo:  user,
			Object:    runtime.RawExtension{Raw: raw},
			OldObject: runtime.RawExtension{Raw: old},
		}}
		if kind.namespaced {
			req.Namespace = "acme"
		}
		for _, wh := range []*admission.Webhook{kind.mutating, kind.validating} {
			resp := wh.Handle(context.Background(), req)
			if !resp.Allowed {
				if resp.Result == nil || resp.Result.Code < 400 || resp.Result.Code >= 500 || resp.Result.Message == "" {
					t.Fatalf("%s %s: refused without a 4xx code and a message: %+v", op, kind.resource, resp.Result)
				}
				continue
			}
			undecodable := !kind.decodes(raw) || (op == admissionv1.Update && wh == kind.validating && !kind.decodes(old))
			if (op == admissionv1.Create || op == admissionv1.Update) && undecodable {
				t.Fatalf("%s %s: allowed an object that does not decode: %q (old %q)", op, kind.resource, raw, old)
			}
			if resp.Result != nil && resp.Result.Code >= http.StatusBadRequest {
				t.Fatalf("%s %s: allowed with code %d", op, kind.resource, resp.Result.Code)
			}
			for _, p := range resp.Patches {
				if _, err := json.Marshal(p.Value); err != nil {
					t.Fatalf("%s %s: a patch that does not encode: %v", op, kind.resource, err)
				}
			}
		}
	})
}
