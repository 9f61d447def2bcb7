package authd_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/kubelogin"
	"github.com/tenancy-dev/tenancy/internal/signing"
)

// The kube-apiserver as a relying party: the suite's API server trusts the authd at kubeIssuer
// (structured authentication configuration), so a person's ID token is a Kubernetes identity, and
// the RoleBindings the operator writes decide what it may do.

// kubeIssuer is where the authd that the API server trusts runs (HTTPS, as the API server
// requires); kubectlClientID is the audience it accepts.
var kubeIssuer *httptest.Server

const kubectlClientID = "kubectl." + operatorNamespace

// unauthorized is how the API server's 401 reads.
const unauthorized = "the server has asked for the client to provide credentials"

// writeAuthenticationConfig writes the API server's AuthenticationConfiguration for issuer into
// dir, as docs/deployment.md shows it, and returns its path.
func writeAuthenticationConfig(dir string, issuer *httptest.Server) string {
	GinkgoHelper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuer.Certificate().Raw})
	indented := ""
	for _, line := range splitLines(string(ca)) {
		indented += "      " + line + "\n"
	}
	config := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: %s
    audiences: [%q]
    certificateAuthority: |
%s  claimValidationRules:
  - expression: "claims.email_verified == true"
    message: "the email address is not verified"
  claimMappings:
    username:
      claim: email
      prefix: ""
    groups:
      expression: "['tenancy:users']"
    uid:
      claim: sub
`, issuer.URL, kubectlClientID, indented)
	path := filepath.Join(dir, "authentication-config.yaml")
	Expect(os.WriteFile(path, []byte(config), 0o600)).To(Succeed())
	return path
}

func splitLines(s string) []string {
	var lines []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		lines = append(lines, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return lines
}

var _ = Describe("kube-apiserver trusting authd", Ordered, func() {
	var issuer string
	BeforeAll(func(ctx SpecContext) {
		// kube-apiserver accepts no EdDSA: make the signing key an ES256 one (the manager's
		// default), as a rotation would, and put the suite's keys back afterwards, so that specs
		// that count the published keys see what they would without this one.
		keys := &corev1.Secret{}
		Expect(kube.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: signing.SecretName}, keys)).To(Succeed())
		suiteKeys := keys.Data[signing.SecretKey]
		DeferCleanup(func(ctx context.Context) {
			Expect(kube.Get(ctx, client.ObjectKeyFromObject(keys), keys)).To(Succeed())
			keys.Data[signing.SecretKey] = suiteKeys
			Expect(kube.Update(ctx, keys)).To(Succeed())
		})
		if signer, _ := keySet(ctx).Signer(time.Now()); signer.Alg != signing.ES256 {
			es256 := *rotator
			es256.Policy.RotateEvery, es256.Policy.PublishAhead, es256.Policy.Algorithm = time.Nanosecond, time.Second, signing.ES256
			Expect(es256.Sync(ctx, time.Now())).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(es256.Sync(ctx, time.Now())).To(Succeed())
				signer, ok := keySet(ctx).Signer(time.Now())
				g.Expect(ok).To(BeTrue())
				g.Expect(signer.Alg).To(Equal(signing.ES256))
			}).WithContext(ctx).Should(Succeed())
		}
		conf := suiteConf
		issuer = startAuthdOn(kubeIssuer, conf)
		kubectl := &tenancyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "kubectl"},
			Spec: tenancyv1.OAuthClientSpec{DisplayName: "kubectl", Public: true, FirstParty: true,
				RedirectURIs: []string{"http://127.0.0.1/callback"},
				GrantTypes:   []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantRefreshToken},
				Scopes:       []tenancyv1.OAuthScope{"openid", "email", "offline_access"}}}
		Expect(kube.Create(ctx, kubectl)).To(Succeed())
		DeferCleanup(func(ctx context.Context) { _ = kube.Delete(ctx, kubectl) })
		eventuallyReady(ctx, kubectl)
		Expect(kubectl.Status.ClientID).To(Equal(kubectlClientID))
	})

	// idToken signs email in to kubectl's client through the code flow, on the trusted authd.
	idToken := func(email string) string {
		GinkgoHelper()
		verifier := oauth2.GenerateVerifier()
		redirect := "http://127.0.0.1:38000/callback"
		q := url.Values{"client_id": {kubectlClientID}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid email"},
			"state": {"k"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
		p := newBrowserAt(issuer, kubeIssuer.Client().Transport).signIn(issuer+"/oauth2/authorize?"+q.Encode(), email)
		Expect(p.Location).NotTo(BeNil(), p.Body)
		form := url.Values{"grant_type": {"authorization_code"}, "client_id": {kubectlClientID}, "code": {p.Location.Query().Get("code")},
			"redirect_uri": {redirect}, "code_verifier": {verifier}}
		resp, err := kubeIssuer.Client().PostForm(issuer+"/oauth2/token", form)
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		var tokens struct {
			IDToken string `json:"id_token"`
		}
		Expect(json.NewDecoder(resp.Body).Decode(&tokens)).To(Succeed())
		return tokens.IDToken
	}
	// asToken is a client of the API server that authenticates with token only.
	asToken := func(token string) client.Client {
		GinkgoHelper()
		config := rest.AnonymousClientConfig(restConfig)
		config.BearerToken = token
		c, err := client.New(config, client.Options{Scheme: kube.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		return c
	}
	canI := func(c client.Client, attrs authzv1.ResourceAttributes) bool {
		GinkgoHelper()
		review := &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}
		Expect(c.Create(context.Background(), review)).To(Succeed())
		return review.Status.Allowed
	}

	It("maps a person's ID token to their Kubernetes username, and the operator's RoleBindings decide", func(ctx SpecContext) {
		org, other := organization(ctx, "k8s"), organization(ctx, "k8s-other")
		email := uniqueName("kube") + "@example.com"
		verifiedMember(ctx, org, email, tenancyv1.RoleAdmin)

		person := asToken(idToken(email))
		// The API server fetched authd's discovery and keys in the background: wait for it.
		review := &authnv1.SelfSubjectReview{}
		Eventually(func() error { return person.Create(ctx, review) }).WithContext(ctx).Should(Succeed())
		Expect(review.Status.UserInfo.Username).To(Equal(email))
		Expect(review.Status.UserInfo.Groups).To(ContainElement("tenancy:users"))

		projects := authzv1.ResourceAttributes{Group: tenancyv1.GroupVersion.Group, Resource: "projects", Verb: "create", Namespace: org.Name}
		Eventually(func() bool { return canI(person, projects) }).WithContext(ctx).Should(BeTrue())
		projects.Namespace = other.Name
		Expect(canI(person, projects)).To(BeFalse(), "another organization's namespace")
		Expect(canI(person, authzv1.ResourceAttributes{Group: tenancyv1.GroupVersion.Group, Resource: "organizations", Verb: "create"})).To(BeFalse())
		var list tenancyv1.ProjectList
		Expect(person.List(ctx, &list, client.InNamespace(org.Name))).To(Succeed())
	})

	It("lets kubectl-tenancy sign in, cache and refresh a token the API server accepts (the exec credential plugin)", func(ctx SpecContext) {
		org := organization(ctx, "k8s-plugin")
		email := uniqueName("plugin") + "@example.com"
		verifiedMember(ctx, org, email, tenancyv1.RoleMember)
		signIns := 0
		options := kubelogin.Options{Issuer: issuer, ClientID: kubectlClientID, Organization: org.Name, HTTPClient: kubeIssuer.Client(),
			CacheDir: GinkgoT().TempDir(), OpenBrowser: func(signInURL string) error {
				// The person's browser: the login page, then back to the plugin's loopback listener.
				signIns++
				p := newBrowserAt(issuer, kubeIssuer.Client().Transport).signIn(signInURL, email)
				if p.Location == nil {
					return fmt.Errorf("sign-in stopped at %s (%d)", p.URL, p.Status)
				}
				resp, err := http.Get(p.Location.String())
				if err == nil {
					resp.Body.Close()
				}
				return err
			}}
		credential, err := kubelogin.Token(ctx, options)
		Expect(err).NotTo(HaveOccurred())
		Expect(credential.Email).To(Equal(email))
		Expect(credential.Org).To(Equal(org.Name))
		exec, err := kubelogin.ExecCredential(credential)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(exec)).To(ContainSubstring(credential.IDToken))

		person := asToken(credential.IDToken)
		review := &authnv1.SelfSubjectReview{}
		Eventually(func() error { return person.Create(ctx, review) }).WithContext(ctx).Should(Succeed())
		Expect(review.Status.UserInfo.Username).To(Equal(email))
		Eventually(func() bool {
			return canI(person, authzv1.ResourceAttributes{Group: tenancyv1.GroupVersion.Group, Resource: "projects", Verb: "list", Namespace: org.Name})
		}).WithContext(ctx).Should(BeTrue())

		again, err := kubelogin.Token(ctx, options)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.IDToken).To(Equal(credential.IDToken), "from the cache")
		Expect(signIns).To(Equal(1))
		Expect(kubelogin.Logout(ctx, options)).To(Succeed())
	})

	It("refuses the ID token of an unverified address, of another client, and an access token", func(ctx SpecContext) {
		org := organization(ctx, "k8s-unverified")
		email := uniqueName("unverified") + "@example.com"
		activeMember(ctx, org, email, tenancyv1.RoleAdmin) // a link-delivered invitation: unverified
		Expect(asToken(idToken(email)).Create(ctx, &authnv1.SelfSubjectReview{})).To(MatchError(ContainSubstring(unauthorized)))

		verified := uniqueName("verified") + "@example.com"
		verifiedMember(ctx, org, verified, tenancyv1.RoleAdmin)
		access := login(verified, org.Name)["access_token"].(string)
		Expect(asToken(access).Create(ctx, &authnv1.SelfSubjectReview{})).To(MatchError(ContainSubstring(unauthorized)),
			"authd's access tokens are for the product's API, not the cluster")
	})
})

// verifiedMember makes email an Active member of org with a password, and verified: a platform
// admin (the suite's client) vouches for the address on the Membership.
func verifiedMember(ctx context.Context, org *tenancyv1.Organization, email string, role tenancyv1.Role) {
	GinkgoHelper()
	m := activeMember(ctx, org, email, role)
	Expect(kube.Patch(ctx, m, client.RawPatch("application/merge-patch+json",
		[]byte(`{"metadata":{"annotations":{"tenancy.dev/email-verified":"true"}}}`)))).To(Succeed())
	Eventually(func(g Gomega) {
		var verified bool
		g.Expect(sqlPool.QueryRow(ctx, "SELECT email_verified_at IS NOT NULL FROM tenancy.users WHERE email = $1", email).Scan(&verified)).To(Succeed())
		g.Expect(verified).To(BeTrue())
	}).WithContext(ctx).Should(Succeed())
}
