package controllers_test

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// operatorNamespace is the suite's controllers.Settings.OperatorNamespace.
const operatorNamespace = "tenancy-system"

// oauthClientRow is what authd reads of a client in tenancy.oauth_clients.
type oauthClientRow struct {
	ClientID       string
	OrganizationID *string
	DisplayName    string
	RedirectURIs   []string
	Public         bool
	FirstParty     bool
	GrantTypes     []string
	Scopes         []string
	AccessTokenTTL *time.Duration
}

func readOAuthClient(ctx context.Context, uid string) (oauthClientRow, error) {
	var r oauthClientRow
	err := sqlPool.QueryRow(ctx, `
		SELECT client_id, organization_id::text, display_name, redirect_uris, public, first_party, grant_types, scopes, access_token_ttl
		FROM tenancy.oauth_clients WHERE uid = $1`, uid).
		Scan(&r.ClientID, &r.OrganizationID, &r.DisplayName, &r.RedirectURIs, &r.Public, &r.FirstParty, &r.GrantTypes, &r.Scopes, &r.AccessTokenTTL)
	return r, err
}

// clientSecretRow is one of a client's rows in tenancy.oauth_client_secrets.
type clientSecretRow struct {
	Hash      []byte
	Rotation  string
	ExpiresAt *time.Time
}

func readClientSecrets(ctx context.Context, uid string) ([]clientSecretRow, error) {
	rows, err := sqlPool.Query(ctx, `SELECT secret_hash AS hash, rotation, expires_at FROM tenancy.oauth_client_secrets
		WHERE client_uid = $1 ORDER BY created_at`, uid)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[clientSecretRow])
}

var _ = Describe("OAuthClient controller", func() {
	var org *tenancyv1.Organization

	BeforeEach(func(ctx SpecContext) {
		org = &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("oacorg")}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
	})

	newClient := func(namespace, name string, public bool) *tenancyv1.OAuthClient {
		return &tenancyv1.OAuthClient{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Spec: tenancyv1.OAuthClientSpec{
				DisplayName:  "Portal",
				RedirectURIs: []string{"https://portal.example.com/callback"},
				Public:       public,
			},
		}
	}
	secretOf := func(ctx SpecContext, c *tenancyv1.OAuthClient) *corev1.Secret {
		GinkgoHelper()
		secret := &corev1.Secret{}
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: c.SecretNameOrDefault()}, secret)
		}).WithContext(ctx).Should(Succeed())
		return secret
	}

	It("registers a confidential client and writes its secret into the Secret, storing only its hash", func(ctx SpecContext) {
		c := newClient(org.Name, "portal", false)
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		eventuallyReady(ctx, c)
		Expect(c.Status.ClientID).To(Equal("portal." + org.Name))
		Expect(c.Status.SecretName).To(Equal("portal-oauth-client"))
		Expect(c.Status.RotatedAt).NotTo(BeNil())

		secret := secretOf(ctx, c)
		Expect(metav1.IsControlledBy(secret, c)).To(BeTrue())
		Expect(secret.Labels).To(HaveKeyWithValue(tenancyv1.ManagedByLabel, tenancyv1.ManagedByValue))
		Expect(string(secret.Data["clientID"])).To(Equal("portal." + org.Name))
		plaintext := secret.Data["clientSecret"]
		Expect(string(plaintext)).To(MatchRegexp(`^tcs_[0-9A-Za-z]{43}$`))

		Expect(readOAuthClient(ctx, string(c.UID))).To(Equal(oauthClientRow{
			ClientID: "portal." + org.Name, OrganizationID: &org.Status.ID, DisplayName: "Portal",
			RedirectURIs: []string{"https://portal.example.com/callback"},
			GrantTypes:   []string{"authorization_code"}, Scopes: []string{"openid", "profile", "email"},
		}), "the CRD's defaults reach the row")
		Expect(readClientSecrets(ctx, string(c.UID))).To(Equal([]clientSecretRow{{Hash: sha256Of(plaintext)}}))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'oauthclient.registered' AND request_id = $1",
			string(c.UID))).To(Equal(1))
	})

	It("rotates on spec.rotation and keeps the old secret working for the grace period", func(ctx SpecContext) {
		c := newClient(org.Name, "rotating", false)
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		eventuallyReady(ctx, c)
		oldSecret := secretOf(ctx, c).Data["clientSecret"]

		Expect(patchSpec(ctx, c, func(c *tenancyv1.OAuthClient) { c.Spec.Rotation = "2026-05" })).To(Succeed())
		var newSecret []byte
		Eventually(func(g Gomega) {
			newSecret = secretOf(ctx, c).Data["clientSecret"]
			g.Expect(newSecret).NotTo(Equal(oldSecret))
		}).WithContext(ctx).Should(Succeed())
		eventuallyReady(ctx, c)

		now := time.Now()
		Expect(readClientSecrets(ctx, string(c.UID))).To(ConsistOf(
			clientSecretRow{Hash: sha256Of(newSecret), Rotation: "2026-05"},
			MatchAllFields(Fields{
				"Hash":     Equal(sha256Of(oldSecret)),
				"Rotation": BeEmpty(),
				"ExpiresAt": PointTo(SatisfyAll(
					BeTemporally(">=", now.Add(rotationGrace-time.Minute)),
					BeTemporally("<=", now.Add(rotationGrace)),
				)),
			}),
		), "the old secret lives out its grace period, the new one is current")
		Expect(countRows(ctx, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'oauthclient.secret_rotated'
		                       AND details->>'reason' = 'spec.rotation changed' AND request_id = $1`, string(c.UID))).To(Equal(1))
	})

	It("issues a new secret, with an Event, when its Secret is deleted by hand", func(ctx SpecContext) {
		c := newClient(org.Name, "lost", false)
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		eventuallyReady(ctx, c)
		secret := secretOf(ctx, c)
		oldSecret := secret.Data["clientSecret"]
		Expect(k8sClient.Delete(ctx, secret)).To(Succeed())

		Eventually(func(g Gomega) {
			g.Expect(secretOf(ctx, c).Data["clientSecret"]).NotTo(Equal(oldSecret))
		}).WithContext(ctx).Should(Succeed())
		Eventually(func(g Gomega) {
			var events corev1.EventList
			g.Expect(k8sClient.List(ctx, &events, client.InNamespace(org.Name))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(HaveField("InvolvedObject.UID", c.UID), HaveField("Reason", "SecretDeleted"))))
		}).WithContext(ctx).Should(Succeed())
	})

	It("registers a public client without a Secret or a secret row", func(ctx SpecContext) {
		c := newClient(org.Name, "cli", true)
		c.Spec.RedirectURIs = []string{"http://127.0.0.1/callback", "com.example.cli:/callback"}
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		eventuallyReady(ctx, c)
		Expect(c.Status.ClientID).To(Equal("cli." + org.Name))
		Expect(c.Status.SecretName).To(BeEmpty())
		Expect(c.Status.RotatedAt).To(BeNil())
		Expect(readOAuthClient(ctx, string(c.UID))).To(HaveField("Public", BeTrue()))
		Expect(readClientSecrets(ctx, string(c.UID))).To(BeEmpty())
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: org.Name, Name: c.SecretNameOrDefault()}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)

		By("a secret row inserted by hand goes at the next resync")
		_, err = sqlPool.Exec(ctx, "INSERT INTO tenancy.oauth_client_secrets (client_uid, secret_hash) VALUES ($1, $2)",
			string(c.UID), sha256Of([]byte("planted")))
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() ([]clientSecretRow, error) {
			return readClientSecrets(ctx, string(c.UID))
		}).WithContext(ctx).Should(BeEmpty())
	})

	It("updates the row when the spec changes, without a new secret", func(ctx SpecContext) {
		c := newClient(org.Name, "changing", false)
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		eventuallyReady(ctx, c)
		secret := secretOf(ctx, c).Data["clientSecret"]

		Expect(patchSpec(ctx, c, func(c *tenancyv1.OAuthClient) {
			c.Spec.DisplayName = "Customer portal"
			c.Spec.FirstParty = true
			c.Spec.GrantTypes = []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantRefreshToken}
			c.Spec.Scopes = []tenancyv1.OAuthScope{tenancyv1.ScopeOpenID, tenancyv1.ScopeOfflineAccess}
			c.Spec.AccessTokenLifetime = &metav1.Duration{Duration: 5 * time.Minute}
		})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(readOAuthClient(ctx, string(c.UID))).To(MatchFields(IgnoreExtras, Fields{
				"DisplayName":    Equal("Customer portal"),
				"FirstParty":     BeTrue(),
				"GrantTypes":     Equal([]string{"authorization_code", "refresh_token"}),
				"Scopes":         Equal([]string{"openid", "offline_access"}),
				"AccessTokenTTL": PointTo(Equal(5 * time.Minute)),
			}))
		}).WithContext(ctx).Should(Succeed())
		eventuallyReady(ctx, c)
		Expect(secretOf(ctx, c).Data["clientSecret"]).To(Equal(secret))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'oauthclient.updated' AND request_id = $1",
			string(c.UID))).To(Equal(1))
	})

	It("restores its row when it is deleted by hand, with a new secret", func(ctx SpecContext) {
		c := newClient(org.Name, "drifting", false)
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		eventuallyReady(ctx, c)
		oldSecret := secretOf(ctx, c).Data["clientSecret"]
		_, err := sqlPool.Exec(ctx, "DELETE FROM tenancy.oauth_clients WHERE uid = $1", string(c.UID))
		Expect(err).NotTo(HaveOccurred())

		Eventually(func(g Gomega) {
			newSecret := secretOf(ctx, c).Data["clientSecret"]
			g.Expect(newSecret).NotTo(Equal(oldSecret))
			g.Expect(readClientSecrets(ctx, string(c.UID))).To(Equal([]clientSecretRow{{Hash: sha256Of(newSecret)}}))
		}).WithContext(ctx).Should(Succeed())
		Expect(readOAuthClient(ctx, string(c.UID))).To(HaveField("ClientID", "drifting."+org.Name))
	})

	It("deletes its row and its Secret when deleted", func(ctx SpecContext) {
		c := newClient(org.Name, "temp", false)
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		eventuallyReady(ctx, c)
		secret := secretOf(ctx, c)

		Expect(k8sClient.Delete(ctx, c)).To(Succeed())
		eventuallyGone(ctx, c)
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.oauth_clients WHERE uid = $1", string(c.UID))).To(BeZero())
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.oauth_client_secrets WHERE client_uid = $1", string(c.UID))).To(BeZero())
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'oauthclient.deleted' AND request_id = $1",
			string(c.UID))).To(Equal(1))
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

	It("registers a client in the operator's namespace as platform-wide, with no organization", func(ctx SpecContext) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}
		Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, ns))).To(Succeed())
		c := newClient(operatorNamespace, uniqueName("console"), false)
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, c))).To(Succeed()) })
		eventuallyReady(ctx, c)
		Expect(c.Status.ClientID).To(Equal(c.Name + "." + operatorNamespace))
		Expect(readOAuthClient(ctx, string(c.UID))).To(HaveField("OrganizationID", BeNil()))
		Expect(string(secretOf(ctx, c).Data["clientID"])).To(Equal(c.Name + "." + operatorNamespace))
	})

	It("stalls in a namespace that no organization owns", func(ctx SpecContext) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("nobody")}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		c := newClient(ns.Name, "stray", false)
		Expect(k8sClient.Create(ctx, c)).To(Succeed())
		cond := eventuallyCondition(ctx, c, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.NamespaceNotBoundReason)
		Expect(cond.Message).To(ContainSubstring("in the operator's namespace " + operatorNamespace + " for a platform-wide client"))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.oauth_clients WHERE uid = $1", string(c.UID))).To(BeZero())
	})
})
