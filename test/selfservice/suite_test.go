// Package selfservice tests authd's self-service REST API and web pages against the whole
// system: envtest's API server with the operator's RBAC and admission webhooks, the manager, a
// database, and authd over real HTTP acting with its service account's real RBAC
// (config/authd/role.yaml). The browser flows drive Debian's Chromium with chromedp.
package selfservice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/authd"
	"github.com/tenancy-dev/tenancy/internal/authd/authdtest"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// generousThrottle lets the specs sign in as often as they like; throttling has specs of its own.
var generousThrottle = authd.ThrottleConfig{AddressBurst: 1000, AddressInterval: time.Millisecond,
	AccountFreeFailures: 100, AccountDelay: time.Millisecond, AccountMaxDelay: 10 * time.Millisecond}

var mailpit *testenv.Mailpit // what authd mails arrives here

var (
	admin      client.Client
	adminCfg   *rest.Config
	authdCfg   *rest.Config
	testScheme *runtime.Scheme
	authdURL   string
	authdConf  authd.Config
	// authdDatabaseURL is the suite's database, for a second authd.
	authdDatabaseURL string
	// sqlPool reaches the suite's database as its owner, to look at rows and act as an app.
	sqlPool *pgxpool.Pool
)

const (
	operatorNamespace = "tenancy-system"
	password          = "correct horse battery staple"
)

func TestSelfService(t *testing.T) {
	testenv.SkipIfShort(t, "envtest, PostgreSQL and Chromium")
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	EnforceDefaultTimeoutsWhenUsingContexts()
	RunSpecs(t, "Self-service")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(GinkgoLogr)
	// authd's address is known before the manager starts: invitation links point to it.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	authdURL = "http://" + listener.Addr().String()

	// StartSuite returns once the webhooks answer.
	suite, err := testenv.StartSuite(ctx, testenv.SuiteOptions{
		Name:              "selfservice",
		Webhooks:          true,
		OperatorNamespace: operatorNamespace,
		Policies:          true,
		ManagerRBAC:       true,
		AuthdRBAC:         true,
		Log:               GinkgoLogr,
		Manager: &testenv.SuiteManager{
			Controllers: &controllers.Settings{
				ResyncPeriod: time.Minute, PublicURL: authdURL, InvitationTTL: time.Hour,
				APIKeyRotationGrace: time.Hour, OperatorNamespace: operatorNamespace,
				Options: controller.Options{MaxConcurrentReconciles: 4},
			},
			Webhooks: &webhooks.Settings{PlatformAdminGroups: []string{"system:masters"}, OperatorNamespace: operatorNamespace},
		},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(suite.Stop)
	admin, adminCfg, testScheme, authdCfg = suite.Client, suite.Config, suite.Scheme, suite.AuthdUser.Config()
	sqlPool = suite.Pool

	pg, err := db.Connect(ctx, suite.DatabaseURL, GinkgoLogr)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pg.Close)
	Expect(pg.Start(ctx)).To(Succeed())
	rotator := &signing.Rotator{Reader: admin, Client: admin, Namespace: operatorNamespace, ContextKeys: pg,
		Policy: signing.Policy{Algorithm: signing.EdDSA, RotateEvery: 30 * 24 * time.Hour, PublishAhead: 10 * time.Minute}}
	Expect(rotator.Sync(ctx, time.Now())).To(Succeed())

	// authd mails through Mailpit (the manager does not: invitations stay links in Secrets).
	mailpit = testenv.StartMailpit(GinkgoT())
	smtp := mailpit.SMTPConfig()
	authdConf = authd.Config{
		Issuer: authdURL, PublicURL: authdURL, Audience: "tenancy", AccessTokenTTL: 15 * time.Minute,
		RefreshTokenTTL: time.Hour, SessionLifetime: 24 * time.Hour, RefreshReuseInterval: 10 * time.Second,
		OperatorNamespace: operatorNamespace, Passwords: authd.OWASPParams, Throttle: generousThrottle,
		SignupTimeout: 30 * time.Second, SMTP: &smtp,
		// The admin API's platform admin (accounts_test.go); system:masters is left out, so that
		// the suite's own admin identity proves nothing there.
		PlatformAdminUsers: []string{platformAdminUsername},
	}
	authdDatabaseURL = suite.DatabaseURL
	startAuthd(listener, authdConf, authdDatabaseURL)
	Eventually(func() int { return get("/readyz").StatusCode }).WithContext(ctx).Should(Equal(http.StatusOK))
}, NodeTimeout(5*time.Minute))

// startAuthd serves authd with conf on listener for the rest of the suite, acting in Kubernetes
// with authd's own identity and RBAC.
func startAuthd(listener net.Listener, conf authd.Config, databaseURL string) {
	GinkgoHelper()
	stop, err := authdtest.Serve(listener, authdtest.Options{Config: conf, DatabaseURL: databaseURL, Kube: authdCfg,
		Scheme: testScheme, SigningKeysNamespace: operatorNamespace, Log: GinkgoLogr})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
}

var nameCounter atomic.Int64

func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, nameCounter.Add(1))
}

// tenant is an organization with a member of each role, each with a password.
type tenant struct {
	org                          *tenancyv1.Organization
	owner, admin, member, viewer string // emails
}

func (t tenant) ns() string { return t.org.Spec.Namespace }

// newTenant creates an organization (tier Pro) whose members have all accepted their
// invitations.
func newTenant(ctx context.Context) tenant {
	GinkgoHelper()
	name := uniqueName("org")
	org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: tenancyv1.OrganizationSpec{Tier: tenancyv1.TierPro, Namespace: name}}
	Expect(admin.Create(ctx, org)).To(Succeed())
	eventuallyReady(ctx, org)
	t := tenant{org: org}
	for _, m := range []struct {
		email *string
		role  tenancyv1.Role
	}{{&t.owner, tenancyv1.RoleOwner}, {&t.admin, tenancyv1.RoleAdmin}, {&t.member, tenancyv1.RoleMember}, {&t.viewer, tenancyv1.RoleViewer}} {
		*m.email = fmt.Sprintf("%s@%s.example", strings.ToLower(string(m.role)), name)
		addMember(ctx, name, *m.email, m.role, "")
	}
	return t
}

// addMember creates a Membership as a platform admin, when the user has no password yet accepts
// its invitation with the suite's password, and waits until the organization's RBAC lets them do
// what the role allows (RoleBindings follow Memberships a moment later).
func addMember(ctx context.Context, ns, email string, role tenancyv1.Role, project string) {
	GinkgoHelper()
	m := &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: uniqueName("m")},
		Spec: tenancyv1.MembershipSpec{User: email, Role: role, Project: project}}
	Expect(admin.Create(ctx, m)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(m), m)).To(Succeed())
		g.Expect(m.Status.State == tenancyv1.MembershipActive || m.Status.InviteSecretName != "").To(BeTrue())
	}).WithContext(ctx).Should(Succeed())
	if m.Status.State != tenancyv1.MembershipActive {
		resp := post("/auth/invitations/accept", "", map[string]string{"token": inviteToken(ctx, m), "password": password})
		Expect(resp.StatusCode).To(Equal(http.StatusOK), resp.Raw)
	}
	eventuallyReady(ctx, m)
	verb := "list"
	if project == "" && role.AtLeast(tenancyv1.RoleAdmin) {
		verb = "create"
	}
	Eventually(func(g Gomega) {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: tenancyv1.GroupVersion.Group, Resource: "memberships"},
		}}
		g.Expect(kubectlAs(email).Create(ctx, review)).To(Succeed())
		g.Expect(review.Status.Allowed).To(BeTrue(), "%s may not %s memberships in %s yet", email, verb, ns)
	}).WithContext(ctx).Should(Succeed())
}

func inviteToken(ctx context.Context, m *tenancyv1.Membership) string {
	GinkgoHelper()
	var secret corev1.Secret
	Expect(admin.Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Status.InviteSecretName}, &secret)).To(Succeed())
	return string(secret.Data[tenancyv1.InvitationTokenKey])
}

func eventuallyReady(ctx context.Context, obj tenancyv1.Object) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		ready := meta.FindStatusCondition(obj.CommonStatusRef().Conditions, tenancyv1.ReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %s %s", ready.Reason, ready.Message)
	}).WithContext(ctx).Should(Succeed())
}

// kubectlAs is a client that acts as a tenancy user the way kubectl with that user's
// credentials would (the same username; the group authd adds makes no difference to RBAC).
func kubectlAs(email string) client.Client {
	GinkgoHelper()
	cfg := rest.CopyConfig(adminCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: email}
	c, err := client.New(cfg, client.Options{Scheme: testScheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// login returns an access token of email in organization org.
func login(email, org string) string {
	GinkgoHelper()
	resp := post("/auth/login", "", map[string]string{"email": email, "password": password, "organization": org})
	Expect(resp.StatusCode).To(Equal(http.StatusOK), resp.Raw)
	return resp.Body["access_token"].(string)
}

// response is an HTTP answer with its body read.
type response struct {
	StatusCode int
	Header     http.Header
	Body       map[string]any
	Raw        string
}

func do(method, path, token string, body any) response {
	GinkgoHelper()
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		Expect(err).NotTo(HaveOccurred())
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, authdURL+path, reader)
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(req)
}

func send(req *http.Request) response {
	GinkgoHelper()
	resp, err := noRedirects.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	r := response{StatusCode: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(path string) response {
	GinkgoHelper()
	return do(http.MethodGet, path, "", nil)
}

func post(path, token string, body any) response {
	GinkgoHelper()
	return do(http.MethodPost, path, token, body)
}

func orgPath(org, rest string) string {
	return "/api/v1/organizations/" + url.PathEscape(org) + rest
}

// items reads a list answer's items.
func items(r response) []map[string]any {
	GinkgoHelper()
	list, ok := r.Body["items"].([]any)
	Expect(ok).To(BeTrue(), r.Raw)
	out := make([]map[string]any, 0, len(list))
	for _, item := range list {
		out = append(out, item.(map[string]any))
	}
	return out
}
