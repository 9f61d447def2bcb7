package webhooks_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// replica is another manager replica: it serves only the webhooks, with a cache of its own and
// the suite's database, and the specs send it admission reviews directly, as the API server
// would send them to whichever replica its Service picked.
type replica struct {
	url    string
	client *http.Client
}

func startReplica(name string) *replica {
	GinkgoHelper()
	serving := &envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"}
	Expect(serving.PrepWithoutInstalling()).To(Succeed())
	DeferCleanup(serving.Cleanup)
	stop, err := testenv.StartManager(testenv.Manager{
		Config: adminCfg, Scheme: testScheme, DatabaseURL: sqlPool.Config().ConnString(), Log: GinkgoLogr.WithName(name),
		Webhooks:       &webhooks.Settings{PlatformAdminGroups: []string{"system:masters"}, OperatorNamespace: "tenancy-system"},
		WebhookInstall: serving,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
	roots := x509.NewCertPool()
	Expect(roots.AppendCertsFromPEM(serving.LocalServingCAData)).To(BeTrue())
	return &replica{
		url:    "https://" + net.JoinHostPort(serving.LocalServingHost, strconv.Itoa(serving.LocalServingPort)),
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}},
	}
}

// create asks the replica's validating webhook to admit the creation of obj by a platform admin,
// and returns whether it did, and its refusal.
func (r *replica) create(ctx context.Context, obj client.Object, dryRun bool) (bool, string, error) {
	gvk, err := apiutil.GVKForObject(obj, testScheme)
	if err != nil {
		return false, "", err
	}
	obj = obj.DeepCopyObject().(client.Object)
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	obj.SetUID(types.UID(uuid.NewString())) // as the API server sets it before validation
	raw, err := json.Marshal(obj)
	if err != nil {
		return false, "", err
	}
	resource := strings.ToLower(gvk.Kind) + "s"
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(uuid.NewString()),
			Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
			Resource:  metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: resource},
			Name:      obj.GetName(),
			Namespace: obj.GetNamespace(),
			Operation: admissionv1.Create,
			UserInfo:  authenticationv1.UserInfo{Username: "admin", Groups: []string{"system:masters", "system:authenticated"}},
			Object:    runtime.RawExtension{Raw: raw},
			DryRun:    &dryRun,
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		return false, "", err
	}
	path := fmt.Sprintf("/validate-%s-%s-%s", strings.ReplaceAll(gvk.Group, ".", "-"), gvk.Version, strings.ToLower(gvk.Kind))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+path, bytes.NewReader(body))
	if err != nil {
		return false, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, "", fmt.Errorf("status %d", resp.StatusCode)
	}
	var answer admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return false, "", err
	}
	if answer.Response == nil {
		return false, "", fmt.Errorf("no response")
	}
	if answer.Response.Allowed {
		return true, "", nil
	}
	if answer.Response.Result == nil {
		return false, "", fmt.Errorf("refused without a reason")
	}
	return false, answer.Response.Result.Message, nil
}

// quotaOf is one Free tier quota, and the i-th new object it counts.
type quotaOf struct {
	what  string
	limit int
	nth   func(ns string, i int) client.Object
}

var (
	projectsQuota = quotaOf{"projects", 3, func(ns string, i int) client.Object {
		return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%d", i)}}
	}}
	membersQuota = quotaOf{"members", 10, func(ns string, i int) client.Object {
		return membership(ns, fmt.Sprintf("m%d", i), fmt.Sprintf("user%d@example.com", i), tenancyv1.RoleMember, "")
	}}
	apiKeysQuota = quotaOf{"API keys", 5, func(ns string, i int) client.Object {
		k := apiKey(ns, fmt.Sprintf("k%d", i), tenancyv1.RoleViewer, "")
		k.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(24 * time.Hour)}
		return k
	}}
)

var _ = Describe("Quotas across replicas", Ordered, func() {
	var replicas []*replica

	BeforeAll(func() {
		replicas = []*replica{startReplica("replica-a"), startReplica("replica-b")}
	})

	// newFreeOrganization creates a Free organization and waits until both replicas admit
	// creations in it (their webhook servers answer and their caches have synced). The probe is
	// a dry run of another name than any spec creates: were it recorded, the counts would be off.
	newFreeOrganization := func(ctx context.Context, q quotaOf) string {
		GinkgoHelper()
		ns := newOrganization(ctx, "quota", tenancyv1.TierFree).Name
		Eventually(func(g Gomega) {
			for _, r := range replicas {
				allowed, refusal, err := r.create(ctx, q.nth(ns, 1000), true)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(allowed).To(BeTrue(), refusal)
			}
		}).WithContext(ctx).Should(Succeed())
		return ns
	}
	full := func(ns string, q quotaOf) string {
		return fmt.Sprintf("%s has %d of the %d %s its tier Free allows", ns, q.limit, q.limit, q.what)
	}

	DescribeTable("count what another replica admitted before their caches show it",
		func(ctx SpecContext, q quotaOf) {
			ns := newFreeOrganization(ctx, q)
			// None of these reaches the API server: no cache ever shows them.
			for i := range q.limit {
				allowed, refusal, err := replicas[i%2].create(ctx, q.nth(ns, i), false)
				Expect(err).NotTo(HaveOccurred())
				Expect(allowed).To(BeTrue(), "creation %d: %s", i, refusal)
			}
			for i, r := range replicas {
				allowed, refusal, err := r.create(ctx, q.nth(ns, q.limit), false)
				Expect(err).NotTo(HaveOccurred())
				Expect(allowed).To(BeFalse(), "replica %d admitted one over the quota", i)
				Expect(refusal).To(ContainSubstring(full(ns, q)))
			}
		},
		Entry("projects", projectsQuota),
		Entry("members", membersQuota),
		Entry("API keys", apiKeysQuota),
	)

	DescribeTable("let exactly one of two creates at once on two replicas take the last slot",
		func(ctx SpecContext, q quotaOf) {
			for round := range 3 {
				ns := newFreeOrganization(ctx, q)
				for i := range q.limit - 1 {
					allowed, refusal, err := replicas[i%2].create(ctx, q.nth(ns, i), false)
					Expect(err).NotTo(HaveOccurred())
					Expect(allowed).To(BeTrue(), "creation %d: %s", i, refusal)
				}
				var wg sync.WaitGroup
				allowed := make([]bool, len(replicas))
				refusals := make([]string, len(replicas))
				for i, r := range replicas {
					wg.Go(func() {
						defer GinkgoRecover()
						var err error
						allowed[i], refusals[i], err = r.create(ctx, q.nth(ns, q.limit-1+i), false)
						Expect(err).NotTo(HaveOccurred())
					})
				}
				wg.Wait()
				Expect(allowed).To(ConsistOf(true, false), "round %d: %v", round, refusals)
				Expect(strings.Join(refusals, "")).To(ContainSubstring(full(ns, q)))
			}
		},
		Entry("projects", projectsQuota),
		Entry("members", membersQuota),
		Entry("API keys", apiKeysQuota),
	)

	It("counts, through the API server, what another replica admitted, and frees a deleted object's slot at once", func(ctx SpecContext) {
		ns := newFreeOrganization(ctx, projectsQuota)
		project := func(name string) *tenancyv1.Project {
			return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		}
		p0 := project("p0")
		Expect(admin.Create(ctx, p0)).To(Succeed())
		Expect(admin.Create(ctx, project("p1"))).To(Succeed())
		allowed, refusal, err := replicas[0].create(ctx, project("p2"), false)
		Expect(err).NotTo(HaveOccurred())
		Expect(allowed).To(BeTrue(), refusal)

		Expect(admin.Create(ctx, project("p3"))).To(MatchError(ContainSubstring(
			"metadata.namespace: Forbidden: " + full(ns, projectsQuota))))

		Expect(admin.Delete(ctx, p0)).To(Succeed())
		// Once the suite's manager sees p0 being deleted; p2's admission still counts.
		Eventually(func() error { return admin.Create(ctx, project("p3")) }).WithContext(ctx).Should(Succeed())
	})

	It("needs the database for a limited tier, and never for an unlimited one", func(ctx SpecContext) {
		limited := newOrganization(ctx, "quota-offline", tenancyv1.TierPro).Name
		unlimited := newOrganization(ctx, "quota-unlimited", tenancyv1.TierEnterprise).Name
		dbProxy.Cut()
		DeferCleanup(dbProxy.Restore)

		web := func(ns string) *tenancyv1.Project {
			return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
		}
		err := admin.Create(ctx, web(limited))
		Expect(apierrors.IsServiceUnavailable(err)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(ContainSubstring("cannot count the projects of %s: the database is unavailable; try again", limited)))
		Expect(admin.Create(ctx, web(unlimited))).To(Succeed())

		dbProxy.Restore()
		Eventually(func() error { return admin.Create(ctx, web(limited)) }).WithContext(ctx).Should(Succeed())
	})
})
