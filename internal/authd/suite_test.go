package authd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/authd"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// The suite runs authd over real HTTP against envtest (signing keys, invitations, signup) with
// the manager's controllers, and a database of its own reached through a proxy that specs cut.
// generousThrottle lets the specs sign in as often as they like; throttling has specs of its own.
var generousThrottle = authd.ThrottleConfig{AddressBurst: 1000, AddressInterval: time.Millisecond,
	AccountFreeFailures: 100, AccountDelay: time.Millisecond, AccountMaxDelay: 10 * time.Millisecond}

var (
	kube       client.Client
	restConfig *rest.Config
	asCaller   client.Client
	sqlPool    *pgxpool.Pool
	dbProxy    *testenv.Proxy
	authdURL   string
	authdDB    string // authd's database URL, through the proxy
	rotator    *signing.Rotator
	suiteConf  authd.Config
)

const (
	operatorNamespace = "tenancy-system"
	password          = "correct horse battery staple"
)

func TestAuthd(t *testing.T) {
	testenv.SkipIfShort(t, "envtest and PostgreSQL")
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	EnforceDefaultTimeoutsWhenUsingContexts()
	RunSpecs(t, "authd")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(GinkgoLogr)
	// The manager runs as the cluster admin (no ManagerRBAC) and reaches the database directly;
	// authd goes through the proxy, which specs cut.
	// The API server trusts the authd that kubernetes_test.go starts at kubeIssuer.
	kubeIssuer = httptest.NewUnstartedServer(nil)
	kubeIssuer.StartTLS()
	authenticationConfig := writeAuthenticationConfig(GinkgoT().TempDir(), kubeIssuer)
	suite, err := testenv.StartSuite(ctx, testenv.SuiteOptions{
		Name: "authd",
		PrepareControlPlane: func(env *envtest.Environment) error {
			env.ControlPlane.GetAPIServer().Configure().Set("authentication-config", authenticationConfig)
			return nil
		},
		Proxy:             true,
		OperatorNamespace: operatorNamespace,
		Log:               GinkgoLogr,
		Manager: &testenv.SuiteManager{
			Controllers: &controllers.Settings{
				ResyncPeriod: time.Minute, PublicURL: "https://auth.tenancy.test", InvitationTTL: time.Hour,
				APIKeyRotationGrace: time.Hour, OperatorNamespace: operatorNamespace,
				Options: controller.Options{MaxConcurrentReconciles: 4},
			},
		},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(suite.Stop)
	kube, sqlPool, dbProxy, authdDB, restConfig = suite.Client, suite.Pool, suite.Proxy, suite.ProxiedURL, suite.Config
	asCaller, err = authd.NewCallerClient(suite.Config, suite.Scheme, kube.RESTMapper())
	Expect(err).NotTo(HaveOccurred())

	// The manager's key rotation, run by hand so that specs choose when keys rotate.
	pg, err := db.Connect(ctx, suite.DatabaseURL, GinkgoLogr)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pg.Close)
	Expect(pg.Start(ctx)).To(Succeed())
	rotator = &signing.Rotator{Reader: kube, Client: kube, Namespace: operatorNamespace, ContextKeys: pg,
		Policy: signing.Policy{Algorithm: signing.EdDSA, RotateEvery: 30 * 24 * time.Hour, PublishAhead: 10 * time.Minute}}
	Expect(rotator.Sync(ctx, time.Now())).To(Succeed())

	suiteConf = authd.Config{
		Audience: "tenancy", AccessTokenTTL: 15 * time.Minute, RefreshTokenTTL: time.Hour, SessionLifetime: 24 * time.Hour,
		RefreshReuseInterval: 10 * time.Second, AllowSignup: true, OperatorNamespace: operatorNamespace,
		Passwords: authd.OWASPParams, Throttle: generousThrottle, SignupTimeout: 30 * time.Second,
	}
	authdURL = startAuthd(suiteConf)
	Eventually(func() int { return get("/readyz").StatusCode }).WithContext(ctx).Should(Equal(http.StatusOK))
}, NodeTimeout(5*time.Minute))

// startAuthd runs an authd with conf over real HTTP for the rest of the suite and returns its URL,
// which is also its issuer.
func startAuthd(conf authd.Config) string {
	GinkgoHelper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Start()
	return startAuthdOn(ts, conf)
}

// startAuthdOn runs an authd with conf on the started server ts, whose URL is its issuer.
func startAuthdOn(ts *httptest.Server, conf authd.Config) string {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(context.Background())
	store, err := authd.OpenStore(ctx, authdDB, "tenancy_authd")
	Expect(err).NotTo(HaveOccurred())
	conf.Issuer = ts.URL
	if conf.SMTP != nil && conf.PublicURL == "" {
		conf.PublicURL = ts.URL // the links it mails lead back to it
	}
	keys := &authd.KeySource{Reader: kube, Namespace: operatorNamespace, Interval: 200 * time.Millisecond}
	server, err := authd.NewServer(conf, store, keys, authd.Kubernetes{Client: kube, AsCaller: asCaller}, GinkgoLogr)
	Expect(err).NotTo(HaveOccurred())
	ts.Config.Handler = server.Handler()
	metrics := httptest.NewServer(server.MetricsHandler())
	metricsURLs[ts.URL] = metrics.URL
	done := make(chan struct{})
	go func() { server.Run(ctx); close(done) }()
	DeferCleanup(func() {
		cancel()
		<-done
		ts.Close()
		metrics.Close()
		store.Close()
	})
	return ts.URL
}

// metricsURLs are the metrics listeners of the authds startAuthd started, by their URLs.
var metricsURLs = map[string]string{}

var nameCounter int

func uniqueName(prefix string) string {
	nameCounter++
	return fmt.Sprintf("%s-%d", prefix, nameCounter)
}

// response is an HTTP answer with its body read.
type response struct {
	StatusCode int
	Header     http.Header
	Body       map[string]any
	Raw        string
}

func do(req *http.Request) response {
	GinkgoHelper()
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	r := response{StatusCode: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

func get(path string, header ...string) response {
	GinkgoHelper()
	return getFrom(authdURL, path, header...)
}

// getFrom is get from the authd at base.
func getFrom(base, path string, header ...string) response {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	Expect(err).NotTo(HaveOccurred())
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(req)
}

// postJSON posts a JSON body to base+path, with extra headers (pairs of name and value).
func postJSON(base, path string, body any, header ...string) response {
	GinkgoHelper()
	data, err := json.Marshal(body)
	Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(string(data)))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(req)
}

func postForm(path string, form url.Values, basicUser, basicPassword string) response {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodPost, authdURL+path, strings.NewReader(form.Encode()))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(basicUser, basicPassword)
	}
	return do(req)
}

// organization creates an Organization and waits for it to be Ready.
func organization(ctx context.Context, prefix string) *tenancyv1.Organization {
	GinkgoHelper()
	org := &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName(prefix)}, Spec: tenancyv1.OrganizationSpec{Tier: tenancyv1.TierPro}}
	Expect(kube.Create(ctx, org)).To(Succeed())
	eventuallyReady(ctx, org)
	return org
}

func eventuallyReady(ctx context.Context, obj tenancyv1.Object) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(kube.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		ready := meta.FindStatusCondition(obj.CommonStatusRef().Conditions, tenancyv1.ReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "%s: %s", ready.Reason, ready.Message)
		g.Expect(obj.CommonStatusRef().ObservedGeneration).To(Equal(obj.GetGeneration()))
	}).WithContext(ctx).Should(Succeed())
}

// member creates an organization-wide Membership for email in org, waits for it, and returns its
// invitation token ("" when the membership is Active at once: the user is verified).
func member(ctx context.Context, org *tenancyv1.Organization, email string, role tenancyv1.Role) (*tenancyv1.Membership, string) {
	GinkgoHelper()
	m := &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: org.Name, Name: uniqueName("m")},
		Spec: tenancyv1.MembershipSpec{User: email, Role: role}}
	Expect(kube.Create(ctx, m)).To(Succeed())
	eventuallyReady(ctx, m)
	if m.Status.State == tenancyv1.MembershipActive {
		return m, ""
	}
	secret := &corev1.Secret{}
	Expect(kube.Get(ctx, client.ObjectKey{Namespace: org.Name, Name: m.Status.InviteSecretName}, secret)).To(Succeed())
	return m, string(secret.Data["token"])
}

// activeMember is an organization-wide member with a password: the invitation, if any, accepted.
func activeMember(ctx context.Context, org *tenancyv1.Organization, email string, role tenancyv1.Role) *tenancyv1.Membership {
	GinkgoHelper()
	m, token := member(ctx, org, email, role)
	if token != "" {
		// Sets the password of a new user; proves it for a user who has one.
		r := postJSON(authdURL, "/auth/invitations/accept", map[string]string{"token": token, "password": password})
		Expect(r.StatusCode).To(Equal(http.StatusOK), r.Raw)
	}
	return m
}

// login logs email in (to organization org, or "") and returns the answer's body.
func login(email, org string) map[string]any {
	GinkgoHelper()
	r := postJSON(authdURL, "/auth/login", map[string]string{"email": email, "password": password, "organization": org})
	Expect(r.StatusCode).To(Equal(http.StatusOK), r.Raw)
	return r.Body
}
