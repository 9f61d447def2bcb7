package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// outage is how long PostgreSQL stays down.
const outage = 30 * time.Second

const ownerPassword = "correct horse battery staple"

var _ = Describe("PostgreSQL stopped", func() {
	It("reports DatabaseUnavailable, answers 503 with Retry-After, loses nothing and converges once it is back", func(ctx SpecContext) {
		pg, err := testenv.NewPrivatePostgres(ctx, "tenancy")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx context.Context) {
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("\n===== PostgreSQL server log =====\n%s\n", lastLines(pg.ServerLog(), 100))
			}
			Expect(pg.Remove(ctx)).To(Succeed())
		})
		s := newStack(ctx, pg.URL("tenancy"))
		authdPort, err := testenv.FreePort()
		Expect(err).NotTo(HaveOccurred())
		authdURL := fmt.Sprintf("http://127.0.0.1:%d", authdPort)
		s.startManager("manager", managerOptions{resyncPeriod: time.Minute, publicURL: authdURL})
		s.waitForWebhooks(ctx)
		authd := s.startAuthd(authdURL)
		Eventually(func() int { return get(ctx, authdURL+"/readyz").status }).WithContext(ctx).Should(Equal(http.StatusOK))

		By("making an organization with an Owner who has a password, and an API key")
		// Enterprise: its creates count no quota, so the webhooks admit them without the database
		// (a limited tier's are refused with 503 meanwhile, webhooks/quota_test.go).
		acme := organization("acme")
		acme.Spec.Tier = tenancyv1.TierEnterprise
		Expect(applyAll(ctx, s.kube, []client.Object{acme})).To(Succeed())
		Expect(applyAll(ctx, s.kube, []client.Object{
			project("acme", "web"),
			membership("acme", "owner", "owner@acme.example", tenancyv1.RoleOwner, ""),
			apiKey("acme", "ci", tenancyv1.RoleMember, ""),
		})).To(Succeed())
		Eventually(func(g Gomega) { expectAllReady(g, ctx, s.kube) }).WithContext(ctx).Should(Succeed())
		var invite corev1.Secret
		Expect(s.kube.Get(ctx, client.ObjectKey{Namespace: "acme", Name: "owner-invite"}, &invite)).To(Succeed())
		accepted := postJSON(ctx, authdURL+"/auth/invitations/accept", map[string]string{"token": string(invite.Data["token"]), "password": ownerPassword})
		Expect(accepted.status).To(Equal(http.StatusOK), accepted.raw)
		login := func() answer {
			return postJSON(ctx, authdURL+"/auth/login", map[string]string{"email": "owner@acme.example", "password": ownerPassword, "organization": "acme"})
		}
		Expect(login().status).To(Equal(http.StatusOK))
		ci := keyOf(ctx, s, "acme", "ci-apikey")
		Expect(clientCredentials(ctx, authdURL, ci).status).To(Equal(http.StatusOK))

		By(fmt.Sprintf("stopping PostgreSQL for %s while a client keeps asking for tokens", outage))
		// Every token a client receives must have its audit row, including those issued in the
		// last moments before the outage, whose rows authd writes after answering.
		issued := 1
		var loadIssued atomic.Int64
		loadDone := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(loadDone)
			for clientCredentials(ctx, authdURL, ci).status == http.StatusOK {
				loadIssued.Add(1)
			}
		}()
		Eventually(loadIssued.Load).WithContext(ctx).WithPolling(10 * time.Millisecond).Should(BeNumerically(">=", 20))
		down := time.Now()
		Expect(pg.Stop(ctx)).To(Succeed())
		started := false
		DeferCleanup(func(ctx context.Context) {
			if !started {
				Expect(pg.Start(ctx)).To(Succeed())
			}
		})
		Eventually(loadDone).WithContext(ctx).Should(BeClosed())
		issued += int(loadIssued.Load())

		By("changing and adding objects while it is down: the webhooks decide without the database")
		org := &tenancyv1.Organization{}
		Expect(s.kube.Get(ctx, client.ObjectKey{Name: "acme"}, org)).To(Succeed())
		Expect(s.kube.Patch(ctx, org, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"displayName":"Acme during the outage"}}`)))).To(Succeed())
		late := []client.Object{
			project("acme", "late"),
			membership("acme", "late", "late@acme.example", tenancyv1.RoleMember, ""),
			apiKey("acme", "late", tenancyv1.RoleViewer, ""),
		}
		for _, obj := range late {
			Expect(s.kube.Create(ctx, obj)).To(Succeed())
		}

		By("seeing DatabaseUnavailable on the objects, and 503 with Retry-After from authd")
		for _, obj := range append(late, org) {
			Eventually(func(g Gomega) {
				g.Expect(s.kube.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
				ready := meta.FindStatusCondition(obj.(tenancyv1.Object).CommonStatusRef().Conditions, tenancyv1.ReadyCondition)
				g.Expect(ready).NotTo(BeNil())
				g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(ready.Reason).To(Equal(tenancyv1.DatabaseUnavailableReason), ready.Message)
			}).WithContext(ctx).Should(Succeed(), "%s %s", kindOf(obj), obj.GetName())
		}
		expectUnavailable(login())
		expectUnavailable(clientCredentials(ctx, authdURL, ci))
		Expect(get(ctx, authdURL+"/readyz").status).To(Equal(http.StatusServiceUnavailable))
		Consistently(func(g Gomega) {
			expectUnavailable(clientCredentials(ctx, authdURL, ci))
			g.Expect(s.kube.Get(ctx, client.ObjectKeyFromObject(org), org)).To(Succeed())
			g.Expect(meta.FindStatusCondition(org.Status.Conditions, tenancyv1.ReadyCondition)).
				To(HaveField("Reason", tenancyv1.DatabaseUnavailableReason))
		}).WithContext(ctx).WithTimeout(time.Until(down.Add(outage))).Should(Succeed())

		By("starting PostgreSQL again")
		Expect(pg.Start(ctx)).To(Succeed())
		started = true
		Eventually(func(g Gomega) {
			expectAllReady(g, ctx, s.kube)
			expectRowsMatch(g, ctx, s)
		}).WithContext(ctx).Should(Succeed())
		Expect(testenv.ReadOrganization(ctx, s.sql, "o.name = 'acme'")).To(HaveField("DisplayName", "Acme during the outage"))
		Expect(testenv.ReadInvitation(ctx, s.sql, "m.uid = $1", string(late[1].GetUID()))).To(HaveField("UsedAt", BeNil()),
			"the late member's invitation")
		Eventually(func() int { return get(ctx, authdURL+"/readyz").status }).WithContext(ctx).Should(Equal(http.StatusOK))
		Expect(login().status).To(Equal(http.StatusOK))
		Expect(clientCredentials(ctx, authdURL, ci).status).To(Equal(http.StatusOK))
		issued++
		Expect(clientCredentials(ctx, authdURL, keyOf(ctx, s, "acme", "late-apikey")).status).To(Equal(http.StatusOK))
		By("finding every login and every token in the audit log")
		Expect(strings.Contains(authd.Log(), "these rows are lost")).To(BeFalse(), "authd dropped audit rows during the outage; see %s", authd.LogPath)
		Eventually(func() int {
			return countRows(ctx, s, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'token.issued' AND target = $1", "apikey/"+ci.id)
		}).WithContext(ctx).Should(Equal(issued), "audit rows of the tokens issued to key %s", ci.id)
		Eventually(func() int {
			return countRows(ctx, s, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'login.succeeded'")
		}).WithContext(ctx).Should(Equal(2), "audit rows of the two successful logins")
	}, SpecTimeout(5*time.Minute))
})

// startAuthd runs cmd/authd as its service account against the stack's database.
func (s *stack) startAuthd(publicURL string) *testenv.Process {
	GinkgoHelper()
	u, err := url.Parse(publicURL)
	Expect(err).NotTo(HaveOccurred())
	p, err := testenv.StartProcess("authd", filepath.Join(s.dir, "authd.log"), filepath.Join(binDir, "authd"),
		"--kubeconfig="+s.authdKubeconfig, "--database-url="+s.databaseURL, "--listen="+u.Host, "--metrics-listen=127.0.0.1:0",
		"--public-url="+publicURL, "--namespace="+operatorNamespace)
	Expect(err).NotTo(HaveOccurred())
	s.stopWithSpec(p)
	return p
}

// expectUnavailable checks an answer of a service whose database is down: 503 with Retry-After
// and an RFC 6749 error body, never a 500.
func expectUnavailable(a answer) {
	GinkgoHelper()
	Expect(a.status).To(Equal(http.StatusServiceUnavailable), a.raw)
	Expect(a.header.Get("Retry-After")).NotTo(BeEmpty())
	Expect(a.body).To(HaveKeyWithValue("error", "temporarily_unavailable"))
}

// apiKeyCredentials are an API key's client id and secret, from its Secret.
type apiKeyCredentials struct{ id, secret string }

func keyOf(ctx context.Context, s *stack, namespace, secret string) apiKeyCredentials {
	GinkgoHelper()
	var sec corev1.Secret
	Expect(s.kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: secret}, &sec)).To(Succeed())
	return apiKeyCredentials{id: string(sec.Data["keyID"]), secret: string(sec.Data["apiKey"])}
}

func clientCredentials(ctx context.Context, authdURL string, key apiKeyCredentials) answer {
	GinkgoHelper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, authdURL+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(key.id, key.secret)
	return do(req)
}

// answer is an HTTP response with its body read.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// do sends req; an answer with status 0 says the request got no response (raw says why).
func do(req *http.Request) answer {
	GinkgoHelper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{raw: err.Error()}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func get(ctx context.Context, url string) answer {
	GinkgoHelper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	Expect(err).NotTo(HaveOccurred())
	return do(req)
}

func postJSON(ctx context.Context, url string, body any) answer {
	GinkgoHelper()
	data, err := json.Marshal(body)
	Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(data)))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	return do(req)
}
