package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// benchOrg is the organization, and namespace, of the webhook benchmark.
const benchOrg = "big"

// membersInOrganization is the webhook target's size (docs/design.md).
const membersInOrganization = 10000

// BenchmarkWebhookDecision measures one validation decision of the membership webhook, as the
// API server asks for it (an AdmissionReview over HTTPS to the manager's webhook server), in an
// organization with 10,000 Memberships. It reports p50 and p99 next to the 5 ms target.
//
//   - create: an Admin adds a member to an Enterprise organization (no quota to count).
//   - create-counting-quota: the same after a downgrade to Pro, so that the members quota counts
//     the 10,000 users on every decision (the slowest cache-only path).
//   - demote-owner: a platform admin demotes one of two Owners, dry run: the decision that locks
//     and reads PostgreSQL.
//   - create-under-quota: an Admin adds a member to a small Pro organization, dry run: the quota
//     has room, so the decision locks the organization in PostgreSQL and reads what other
//     replicas admitted.
func BenchmarkWebhookDecision(b *testing.B) {
	ctx := context.Background()
	env, cfg, database := startControlPlane(b, "benchwebhook", testenv.WithWebhooks)

	scheme := testenv.Scheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}
	// The webhooks alone: the controllers would spend the run reconciling 10,000 memberships.
	stop, err := testenv.StartManager(testenv.Manager{
		Config: cfg, Scheme: scheme, DatabaseURL: database.URL, Log: logr.Discard(),
		Webhooks:       &webhooks.Settings{PlatformAdminGroups: []string{"system:masters"}, OperatorNamespace: "tenancy-system"},
		WebhookInstall: &env.WebhookInstallOptions,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer stop()

	const org = benchOrg
	waitFor(b, func() error { return c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: org}}) })
	waitFor(b, func() error {
		return c.Create(ctx, &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: org}, Spec: tenancyv1.OrganizationSpec{Tier: tenancyv1.TierEnterprise}})
	})
	owners := []string{"owner-a", "owner-b"}
	for _, name := range owners {
		waitFor(b, func() error {
			return c.Create(ctx, benchMembership(name, name+"@example.com", tenancyv1.RoleOwner))
		})
	}
	waitFor(b, func() error {
		return c.Create(ctx, benchMembership("admin", "admin@example.com", tenancyv1.RoleAdmin))
	})
	parallel(b, inputWorkers, membersInOrganization-len(owners)-1, func(n int) error {
		return c.Create(ctx, benchMembership(fmt.Sprintf("m%d", n), fmt.Sprintf("user%d@example.com", n), tenancyv1.RoleMember))
	})
	ownerA := &tenancyv1.Membership{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: org, Name: owners[0]}, ownerA); err != nil {
		b.Fatal(err)
	}

	review := newReviewer(b, env.WebhookInstallOptions.LocalServingHost, env.WebhookInstallOptions.LocalServingPort,
		env.WebhookInstallOptions.LocalServingCAData)
	newcomer := benchMembership("newcomer", "newcomer@example.com", tenancyv1.RoleMember)
	asAdmin := authenticationv1.UserInfo{Username: "admin@example.com", Groups: []string{"system:authenticated"}}
	asPlatform := authenticationv1.UserInfo{Username: "ops", Groups: []string{"system:masters"}}
	demoted := ownerA.DeepCopy()
	demoted.Spec.Role = tenancyv1.RoleAdmin

	b.Run("create", func(b *testing.B) {
		review.measure(b, admissionv1.Create, asAdmin, newcomer, nil, true)
	})
	b.Run("demote-owner", func(b *testing.B) {
		review.measure(b, admissionv1.Update, asPlatform, demoted, ownerA, true)
	})
	// The controllers are off: the namespace is made here, as for the big organization.
	waitFor(b, func() error {
		return c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: smallProOrg}})
	})
	waitFor(b, func() error {
		return c.Create(ctx, &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: smallProOrg}, Spec: tenancyv1.OrganizationSpec{Tier: tenancyv1.TierPro}})
	})
	waitFor(b, func() error {
		return c.Create(ctx, membershipIn(smallProOrg, "admin", "admin@example.com", tenancyv1.RoleAdmin))
	})
	waitFor(b, func() error { // the cache shows the Admin
		return c.Create(ctx, membershipIn(smallProOrg, "probe", "probe@example.com", tenancyv1.RoleMember), client.DryRunAll)
	})
	b.Run("create-under-quota", func(b *testing.B) {
		review.measure(b, admissionv1.Create, asAdmin, membershipIn(smallProOrg, "newcomer", "newcomer@example.com", tenancyv1.RoleMember), nil, true)
	})
	pro := []byte(`{"spec":{"tier":"Pro"}}`)
	if err := c.Patch(ctx, &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: org}}, client.RawPatch(types.MergePatchType, pro)); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second) // let the cache see the new tier
	b.Run("create-counting-quota", func(b *testing.B) {
		// Pro allows 500 members: the decision counts 10,000 users, then refuses.
		review.measure(b, admissionv1.Create, asAdmin, newcomer, nil, false)
	})
}

func benchMembership(name, user string, role tenancyv1.Role) *tenancyv1.Membership {
	return membershipIn(benchOrg, name, user, role)
}

// smallProOrg is the webhook benchmark's organization whose members quota has room.
const smallProOrg = "small-pro"

func membershipIn(namespace, name, user string, role tenancyv1.Role) *tenancyv1.Membership {
	return &tenancyv1.Membership{
		TypeMeta:   metav1.TypeMeta{APIVersion: tenancyv1.GroupVersion.String(), Kind: "Membership"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       tenancyv1.MembershipSpec{User: user, Role: role},
	}
}

// waitFor retries do until the webhooks answer (the manager is starting).
func waitFor(b *testing.B, do func() error) {
	b.Helper()
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = do(); err == nil {
			return
		}
	}
	b.Fatal(err)
}

// reviewer sends AdmissionReviews to the membership validating webhook, as the API server does.
type reviewer struct {
	url    string
	client *http.Client
}

func newReviewer(b *testing.B, host string, port int, ca []byte) *reviewer {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		b.Fatal("no webhook CA")
	}
	return &reviewer{
		url:    fmt.Sprintf("https://%s:%d/validate-tenancy-dev-v1alpha1-membership", host, port),
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}},
	}
}

// measure sends b.N reviews and reports the latency percentiles; each answer must be wantAllowed.
func (r *reviewer) measure(b *testing.B, op admissionv1.Operation, user authenticationv1.UserInfo, obj, old *tenancyv1.Membership, wantAllowed bool) {
	dryRun := true
	req := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "bench",
			Kind:      metav1.GroupVersionKind{Group: tenancyv1.GroupVersion.Group, Version: tenancyv1.GroupVersion.Version, Kind: "Membership"},
			Resource:  metav1.GroupVersionResource{Group: tenancyv1.GroupVersion.Group, Version: tenancyv1.GroupVersion.Version, Resource: "memberships"},
			Name:      obj.Name,
			Namespace: obj.Namespace,
			Operation: op,
			UserInfo:  user,
			Object:    runtime.RawExtension{Object: obj},
			DryRun:    &dryRun,
		},
	}
	if old != nil {
		req.Request.OldObject = runtime.RawExtension{Object: old}
	}
	body, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	latencies := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		resp, err := r.client.Post(r.url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var answer admissionv1.AdmissionReview
		err = json.NewDecoder(resp.Body).Decode(&answer)
		_ = resp.Body.Close()
		latencies = append(latencies, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		if answer.Response.Allowed != wantAllowed {
			b.Fatalf("allowed = %t, want %t: %v", answer.Response.Allowed, wantAllowed, answer.Response.Result)
		}
	}
	slices.Sort(latencies)
	at := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}
