package authd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/rest"
)

func TestUsernameOfRefusesAdministrativeNames(t *testing.T) {
	for _, tc := range []struct {
		reason, prefix, email, want string
		refused                     bool
	}{
		{reason: "an email is its own username without a prefix", email: "alice@example.com", want: "alice@example.com"},
		{reason: "the prefix of the cluster's OIDC usernames", prefix: "oidc:", email: "alice@example.com", want: "oidc:alice@example.com"},
		{reason: "a prefix that makes Kubernetes' own names", prefix: "system:", email: "alice@example.com", refused: true},
		{reason: "a platform administrator's name", email: "root@example.com", refused: true},
	} {
		s := &Server{cfg: Config{UsernamePrefix: tc.prefix, PlatformAdminUsers: []string{"root@example.com"}}}
		got, err := s.usernameOf(tc.email)
		if (err != nil) != tc.refused || got != tc.want {
			t.Errorf("%s: usernameOf(%q) = %q, %v", tc.reason, tc.email, got, err)
		}
	}
}

func TestCallerTransportNeverSendsAuthdsOwnIdentity(t *testing.T) {
	var seen http.Header
	next := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = r.Header
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	})
	transport := callerTransport{next: next}
	req, _ := http.NewRequest(http.MethodGet, "https://api.example/api", nil)
	if _, err := transport.RoundTrip(req); !errors.Is(err, errNoCaller) {
		t.Fatalf("a request without a caller went out: %v", err)
	}
	if seen != nil {
		t.Fatal("the request without a caller reached the API server")
	}
	req = req.WithContext(withCaller(context.Background(), "alice@example.com"))
	if _, err := transport.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"alice@example.com"}, seen.Values("Impersonate-User")); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{TenancyUsersGroup}, seen.Values("Impersonate-Group")); diff != "" {
		t.Error(diff)
	}
}

// TestCallerClientImpersonatesOnEveryRequest checks the client NewCallerClient builds, not only
// its transport: requests carry the caller, and one without a caller never reaches the server.
func TestCallerClientImpersonatesOnEveryRequest(t *testing.T) {
	var requests []http.Header
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests = append(requests, r.Header.Clone())
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"NamespaceList","apiVersion":"v1","items":[]}`))
	}))
	defer server.Close()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("Namespace"), meta.RESTScopeRoot)
	c, err := NewCallerClient(&rest.Config{Host: server.URL}, scheme, mapper)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.List(context.Background(), &corev1.NamespaceList{}); !errors.Is(err, errNoCaller) {
		t.Fatalf("a list without a caller: %v", err)
	}
	if len(requests) != 0 {
		t.Fatal("a request without a caller reached the API server")
	}
	if err := c.List(withCaller(context.Background(), "alice@example.com"), &corev1.NamespaceList{}); err != nil {
		t.Fatal(err)
	}
	if len(requests) != 1 || requests[0].Get("Impersonate-User") != "alice@example.com" ||
		!slices.Equal(requests[0].Values("Impersonate-Group"), []string{TenancyUsersGroup}) {
		t.Errorf("requests = %v, want one as alice@example.com in %s only", requests, TenancyUsersGroup)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestMembershipNameIsAValidUniqueLabel(t *testing.T) {
	long := "very.long.address.of.somebody.important@a-subdomain.example.com"
	for _, tc := range []struct{ reason, email, project, want string }{
		{reason: "an organization membership", email: "bob@example.com", want: "bob-example-com-" + hashSuffix("/bob@example.com")},
		{reason: "a project membership", email: "bob@example.com", project: "web", want: "web-bob-example-com-" + hashSuffix("web/bob@example.com")},
		{reason: "a long address ends in a hash", email: long, want: "very-long-address-of-somebody-important-" + hashSuffix("/"+long)},
	} {
		got := membershipName(tc.email, tc.project)
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("%s: %q is not a DNS label: %v", tc.reason, got, errs)
		}
		if got != tc.want {
			t.Errorf("%s: membershipName(%q, %q) = %q, want %q", tc.reason, tc.email, tc.project, got, tc.want)
		}
	}
	for _, pair := range [][2][2]string{
		{{long, "web"}, {long, "api"}},
		{{"a.b@x.com", ""}, {"a-b@x.com", ""}},
		{{"p-a@x.com", ""}, {"a@x.com", "p"}},
	} {
		if membershipName(pair[0][0], pair[0][1]) == membershipName(pair[1][0], pair[1][1]) {
			t.Errorf("%v and %v share a Membership name", pair[0], pair[1])
		}
	}
}

func hashSuffix(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:10]
}

func TestKubeProblemKeepsKubectlsMessageAndFields(t *testing.T) {
	invalid := apierrors.NewInvalid(schema.GroupKind{Group: "tenancy.dev", Kind: "Membership"}, "bob", field.ErrorList{
		field.Forbidden(field.NewPath("spec", "role"), "alice@example.com is Admin in acme and cannot grant Owner"),
	})
	var p *problem
	if !errors.As(kubeProblem(invalid), &p) {
		t.Fatal("an Invalid error is the caller's problem")
	}
	want := &problem{Status: http.StatusUnprocessableEntity, Code: "invalid", Message: invalid.Error(),
		Fields: []fieldProblem{{Field: "spec.role", Type: "FieldValueForbidden", Message: "Forbidden: alice@example.com is Admin in acme and cannot grant Owner"}}}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Error(diff)
	}
	unavailable := apierrors.NewServiceUnavailable("etcd is away")
	if got := kubeProblem(unavailable); got != error(unavailable) {
		t.Errorf("a server-side failure became %v: it is not the caller's problem", got)
	}
}
