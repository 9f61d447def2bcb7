package upgrade_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/apikey"
	"github.com/tenancy-dev/tenancy/internal/authd"
	"github.com/tenancy-dev/tenancy/internal/testenv"
	"github.com/tenancy-dev/tenancy/pkg/tenancy"
)

// authdServer is this release's authd, run in the test process over real HTTP, with a verifier
// of its tokens that fetches its published keys as applications do.
type authdServer struct {
	url      string
	verifier *tenancy.Verifier
}

// startAuthd runs authd against the world's database and the signing keys the managers keep in
// the operator's namespace, until the spec ends.
func (w *world) startAuthd(ctx context.Context) *authdServer {
	GinkgoHelper()
	store, err := authd.OpenStore(ctx, w.suite.DatabaseURL, "tenancy_authd")
	Expect(err).NotTo(HaveOccurred())
	asCaller, err := authd.NewCallerClient(w.suite.Config, w.suite.Scheme, w.kube.RESTMapper())
	Expect(err).NotTo(HaveOccurred())
	ts := httptest.NewServer(nil)
	conf := authd.Config{
		Issuer: ts.URL, Audience: "tenancy", AccessTokenTTL: 15 * time.Minute, RefreshTokenTTL: time.Hour,
		SessionLifetime: 24 * time.Hour, RefreshReuseInterval: 10 * time.Second, OperatorNamespace: operatorNamespace,
		Passwords: authd.OWASPParams, Throttle: authd.DefaultThrottle, SignupTimeout: 30 * time.Second, PublicURL: ts.URL,
	}
	keys := &authd.KeySource{Reader: w.kube, Namespace: operatorNamespace, Interval: time.Second}
	server, err := authd.NewServer(conf, store, keys, authd.Kubernetes{Client: w.kube, AsCaller: asCaller}, GinkgoLogr)
	Expect(err).NotTo(HaveOccurred())
	ts.Config.Handler = server.Handler()
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { server.Run(runCtx); close(done) }()
	DeferCleanup(func() {
		cancel()
		<-done
		ts.Close()
		store.Close()
	})
	return &authdServer{url: ts.URL, verifier: tenancy.NewVerifier(ts.URL, conf.Audience, tenancy.NewJWKSCache(ts.URL+"/.well-known/jwks.json"))}
}

// expectKeysWork checks every APIKey among objs: its Secret holds a well-formed key whose key id
// its status shows, the key's hash finds its current row (the lookup authd does), and authd
// trades the key for an access token of the key's organization, project and role.
func (w *world) expectKeysWork(ctx context.Context, a *authdServer, objs []*unstructured.Unstructured, s snapshot) {
	GinkgoHelper()
	for _, obj := range tenancyObjects(objs) {
		if obj.GetKind() != "APIKey" {
			continue
		}
		live, err := get(ctx, w.kube, obj)
		Expect(err).NotTo(HaveOccurred())
		st, err := statusOf(live)
		Expect(err).NotTo(HaveOccurred())
		secretName, _, _ := unstructured.NestedString(live.Object, "spec", "secretName")
		if secretName == "" {
			secretName = live.GetName() + "-apikey"
		}
		what := "APIKey " + name(obj) + " (Secret " + secretName + ")"
		secret, ok := s.Secrets[live.GetNamespace()+"/"+secretName]
		Expect(ok).To(BeTrue(), "%s: no Secret", what)
		key := string(secret.Data[tenancyv1.APIKeySecretKey])
		keyID, err := apikey.Parse(key)
		Expect(err).NotTo(HaveOccurred(), "%s: the Secret's %s", what, tenancyv1.APIKeySecretKey)
		Expect(keyID).To(Equal(string(secret.Data[tenancyv1.APIKeyIDSecretKey])), "%s: the Secret's key id", what)
		Expect(keyID).To(Equal(st.KeyID), "%s: status.keyID", what)

		row, err := testenv.ReadAPIKey(ctx, w.sql, "k.hash = $1", apikey.Hash(key))
		Expect(err).NotTo(HaveOccurred(), "%s: finding the key's row by its hash", what)
		Expect(row).To(And(
			HaveField("ID", st.ID), HaveField("UID", string(live.GetUID())), HaveField("KeyID", keyID),
			HaveField("RevokedAt", BeNil()), HaveField("SupersededAt", BeNil()),
		), "%s: the row its key hashes to", what)
		Expect(row.OrganizationID).NotTo(BeNil(), "%s: the row has no organization", what)

		var token string
		Eventually(func(g Gomega) {
			status, body := a.clientCredentials(ctx, keyID, key)
			g.Expect(status).To(Equal(http.StatusOK), "%s: authd's token endpoint answered %s", what, body)
			var resp struct {
				AccessToken string `json:"access_token"`
			}
			g.Expect(json.Unmarshal([]byte(body), &resp)).To(Succeed())
			token = resp.AccessToken
		}).WithContext(ctx).Should(Succeed())
		claims, err := a.verifier.Verify(ctx, token)
		Expect(err).NotTo(HaveOccurred(), "%s: verifying the access token authd issued", what)
		project := ""
		if row.ProjectID != nil {
			project = *row.ProjectID
		}
		Expect(*claims).To(And(
			HaveField("ClientID", keyID), HaveField("Org", *row.OrganizationID), HaveField("Project", project), HaveField("Role", row.Role),
		), "%s: the access token's claims", what)
	}
}

// clientCredentials asks authd for an access token with an API key (RFC 6749 client credentials,
// HTTP Basic), and returns the status and body of its answer.
func (a *authdServer) clientCredentials(ctx context.Context, keyID, key string) (int, string) {
	GinkgoHelper()
	form := url.Values{"grant_type": {"client_credentials"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url+"/oauth2/token", strings.NewReader(form.Encode()))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(keyID, key)
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, string(body)
}
