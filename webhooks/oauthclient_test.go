package webhooks_test

import (
	"errors"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

var _ = Describe("OAuthClient admission", Ordered, ContinueOnFailure, func() {
	const (
		clientAdmin  = "oscar@example.com"
		clientMember = "mia@example.com"
		operatorNS   = "tenancy-system"
	)
	var org *tenancyv1.Organization

	BeforeAll(func(ctx SpecContext) {
		org = newOrganization(ctx, "apps", tenancyv1.TierFree)
		for _, m := range []*tenancyv1.Membership{
			membership(org.Name, "oscar", clientAdmin, tenancyv1.RoleAdmin, ""),
			membership(org.Name, "mia", clientMember, tenancyv1.RoleMember, ""),
		} {
			Expect(admin.Create(ctx, m)).To(Succeed())
			eventuallyReady(ctx, m)
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}
		Expect(client.IgnoreAlreadyExists(admin.Create(ctx, ns))).To(Succeed())
	})

	oauthClient := func(ns string, public bool, redirectURIs ...string) *tenancyv1.OAuthClient {
		return &tenancyv1.OAuthClient{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: uniqueName("app")},
			Spec:       tenancyv1.OAuthClientSpec{DisplayName: "App", Public: public, RedirectURIs: redirectURIs},
		}
	}
	// refusedWith expects err to be the API server's answer code, naming field and saying message.
	refusedWith := func(err error, code int32, field, message string) {
		GinkgoHelper()
		Expect(err).To(HaveOccurred())
		var status apierrors.APIStatus
		Expect(errors.As(err, &status)).To(BeTrue(), "%v", err)
		Expect(status.Status().Code).To(Equal(code), "%v", err)
		Expect(err.Error()).To(ContainSubstring(field + ": "))
		Expect(err.Error()).To(ContainSubstring(message))
	}

	It("lets an organization's Admin register a client, and gives it a Secret name and the finalizer", func(ctx SpecContext) {
		c := oauthClient(org.Name, false, "https://app.example.com/callback")
		Expect(as(clientAdmin).Create(ctx, c)).To(Succeed())
		Expect(c.Spec.SecretName).To(Equal(c.Name + "-oauth-client"))
		Expect(controllerutil.ContainsFinalizer(c, tenancyv1.Finalizer)).To(BeTrue())
		Expect(c.Annotations).To(HaveKeyWithValue(tenancyv1.LastChangedByAnnotation, clientAdmin))
		eventuallyReady(ctx, c)
		Expect(c.Status.ClientID).To(Equal(c.Name + "." + org.Name))

		By("and delete it")
		Expect(as(clientAdmin).Delete(ctx, c)).To(Succeed())
	})

	It("lets only a platform admin mark a client first-party, which skips the consent page", func(ctx SpecContext) {
		c := oauthClient(org.Name, false, "https://mallory.example/cb")
		c.Spec.FirstParty = true
		refusedWith(as(clientAdmin).Create(ctx, c), http.StatusUnprocessableEntity, "spec.firstParty",
			"Forbidden: "+clientAdmin+" is not a platform admin: only they mark a client first-party")

		c.Spec.FirstParty = false
		Expect(as(clientAdmin).Create(ctx, c)).To(Succeed())
		patch := func(json string) client.Patch { return client.RawPatch(types.MergePatchType, []byte(json)) }
		refusedWith(as(clientAdmin).Patch(ctx, c, patch(`{"spec":{"firstParty":true}}`)), http.StatusUnprocessableEntity,
			"spec.firstParty", "only they mark a client first-party")
		Expect(admin.Patch(ctx, c, patch(`{"spec":{"firstParty":true}}`))).To(Succeed(), "a platform admin may")
		Expect(as(clientAdmin).Patch(ctx, c, patch(`{"spec":{"displayName":"Renamed"}}`))).To(Succeed(),
			"a first-party client stays editable by its organization's Admins")
	})

	It("refuses a Member, saying why", func(ctx SpecContext) {
		err := as(clientMember).Create(ctx, oauthClient(org.Name, false, "https://app.example.com/callback"))
		refusedWith(err, http.StatusUnprocessableEntity, "metadata.namespace",
			"Forbidden: "+clientMember+" is Member in "+org.Name+" and needs at least Admin there to create OAuth clients")

		existing := oauthClient(org.Name, true, "http://127.0.0.1/callback")
		Expect(admin.Create(ctx, existing)).To(Succeed())
		err = as(clientMember).Delete(ctx, existing)
		refusedWith(err, http.StatusForbidden, "metadata.namespace",
			clientMember+" is Member in "+org.Name+" and needs at least Admin there to delete OAuth clients")
	})

	It("refuses http redirect URIs except on loopback, wildcards, and private-use schemes for confidential clients", func(ctx SpecContext) {
		adminClient := as(clientAdmin)
		err := adminClient.Create(ctx, oauthClient(org.Name, false, "http://app.example.com/callback"), client.DryRunAll)
		refusedWith(err, http.StatusUnprocessableEntity, "spec.redirectURIs[0]",
			"http is allowed only on a loopback address (127.0.0.1, [::1] or localhost), for native apps: use https")

		for _, uri := range []string{"http://127.0.0.1:5556/callback", "http://[::1]/callback", "http://localhost:8000/cb"} {
			Expect(adminClient.Create(ctx, oauthClient(org.Name, false, uri), client.DryRunAll)).To(Succeed(), uri)
		}

		err = adminClient.Create(ctx, oauthClient(org.Name, false, "https://app.example.com/callback", "https://*.example.com/callback"), client.DryRunAll)
		refusedWith(err, http.StatusUnprocessableEntity, "spec.redirectURIs[1]", "must not contain a wildcard (*)")

		err = adminClient.Create(ctx, oauthClient(org.Name, false, "com.example.app:/callback"), client.DryRunAll)
		refusedWith(err, http.StatusUnprocessableEntity, "spec.redirectURIs[0]",
			"a private-use scheme is for native apps, which are public clients: set spec.public, or use https")
		Expect(adminClient.Create(ctx, oauthClient(org.Name, true, "com.example.app:/callback"), client.DryRunAll)).To(Succeed())

		logout := oauthClient(org.Name, false, "https://app.example.com/callback")
		logout.Spec.PostLogoutRedirectURIs = []string{"https://app.example.com/bye#top"}
		err = adminClient.Create(ctx, logout, client.DryRunAll)
		refusedWith(err, http.StatusUnprocessableEntity, "spec.postLogoutRedirectURIs[0]", "must not have a fragment (#)")

		refreshOnly := oauthClient(org.Name, false)
		refreshOnly.Spec.GrantTypes = []tenancyv1.OAuthGrantType{tenancyv1.GrantRefreshToken}
		err = adminClient.Create(ctx, refreshOnly, client.DryRunAll)
		refusedWith(err, http.StatusUnprocessableEntity, "spec.grantTypes", "refresh_token needs authorization_code")
	})

	It("lets only platform admins register platform-wide clients in the operator's namespace", func(ctx SpecContext) {
		err := as(clientAdmin).Create(ctx, oauthClient(operatorNS, false, "https://console.example.com/callback"))
		refusedWith(err, http.StatusUnprocessableEntity, "metadata.namespace",
			clientAdmin+" is not a platform admin (--platform-admin-users, --platform-admin-groups): only they create the platform-wide OAuth clients of namespace "+operatorNS)

		c := oauthClient(operatorNS, false, "https://console.example.com/callback")
		Expect(admin.Create(ctx, c)).To(Succeed())
		eventuallyReady(ctx, c)
		err = as(clientAdmin).Delete(ctx, c)
		refusedWith(err, http.StatusForbidden, "metadata.namespace", clientAdmin+" is not a platform admin")
		Expect(admin.Delete(ctx, c)).To(Succeed())
	})

	It("refuses a client in a namespace no organization owns", func(ctx SpecContext) {
		err := admin.Create(ctx, oauthClient("default", false, "https://app.example.com/callback"), client.DryRunAll)
		refusedWith(err, http.StatusUnprocessableEntity, "metadata.namespace", "namespace default is bound to no organization")
	})

	Describe("the CRD's rules, for everyone", func() {
		It("refuses offline_access without the refresh_token grant", func(ctx SpecContext) {
			c := oauthClient(org.Name, false, "https://app.example.com/callback")
			c.Spec.Scopes = []tenancyv1.OAuthScope{tenancyv1.ScopeOpenID, tenancyv1.ScopeOfflineAccess}
			err := admin.Create(ctx, c, client.DryRunAll)
			refusedWith(err, http.StatusUnprocessableEntity, "spec.scopes", "offline_access needs the refresh_token grant in spec.grantTypes")

			c.Spec.GrantTypes = []tenancyv1.OAuthGrantType{tenancyv1.GrantAuthorizationCode, tenancyv1.GrantRefreshToken}
			Expect(admin.Create(ctx, c, client.DryRunAll)).To(Succeed())

			c.Spec.Scopes = []tenancyv1.OAuthScope{tenancyv1.ScopeProfile}
			refusedWith(admin.Create(ctx, c, client.DryRunAll), http.StatusUnprocessableEntity, "spec.scopes", "scopes must contain openid")
		})

		It("keeps spec.public as it was created", func(ctx SpecContext) {
			c := oauthClient(org.Name, false, "https://app.example.com/callback")
			Expect(admin.Create(ctx, c)).To(Succeed())
			public := c.DeepCopy()
			public.Spec.Public, public.Spec.SecretName = true, ""
			err := admin.Patch(ctx, public, client.MergeFrom(c))
			refusedWith(err, http.StatusUnprocessableEntity, "spec.public", "spec.public is immutable")
		})

		It("bounds the token lifetimes", func(ctx SpecContext) {
			for _, tc := range []struct {
				access, refresh time.Duration
				field, message  string
			}{
				{30 * time.Second, 0, "spec.accessTokenLifetime", "accessTokenLifetime must be between 1m and 24h"},
				{25 * time.Hour, 0, "spec.accessTokenLifetime", "accessTokenLifetime must be between 1m and 24h"},
				{0, 30 * time.Minute, "spec.refreshTokenLifetime", "refreshTokenLifetime must be between 1h and 2160h (90 days)"},
				{0, 91 * 24 * time.Hour, "spec.refreshTokenLifetime", "refreshTokenLifetime must be between 1h and 2160h (90 days)"},
				{time.Minute, 2160 * time.Hour, "", ""},
				{24 * time.Hour, time.Hour, "", ""},
			} {
				c := oauthClient(org.Name, false, "https://app.example.com/callback")
				if tc.access != 0 {
					c.Spec.AccessTokenLifetime = &metav1.Duration{Duration: tc.access}
				}
				if tc.refresh != 0 {
					c.Spec.RefreshTokenLifetime = &metav1.Duration{Duration: tc.refresh}
				}
				err := admin.Create(ctx, c, client.DryRunAll)
				if tc.field == "" {
					Expect(err).NotTo(HaveOccurred(), "access %s, refresh %s", tc.access, tc.refresh)
					continue
				}
				refusedWith(err, http.StatusUnprocessableEntity, tc.field, tc.message)
			}
		})

		It("needs a redirect URI for the authorization_code grant, and no secret for a public client", func(ctx SpecContext) {
			refusedWith(admin.Create(ctx, oauthClient(org.Name, false), client.DryRunAll), http.StatusUnprocessableEntity,
				"spec.redirectURIs", "the authorization_code grant needs at least one redirect URI")

			exchange := oauthClient(org.Name, false)
			exchange.Spec.GrantTypes = []tenancyv1.OAuthGrantType{tenancyv1.GrantTokenExchange}
			Expect(admin.Create(ctx, exchange, client.DryRunAll)).To(Succeed(), "token exchange needs no redirect")

			named := oauthClient(org.Name, true, "http://127.0.0.1/callback")
			named.Spec.SecretName = "cli-secret"
			refusedWith(admin.Create(ctx, named, client.DryRunAll), http.StatusUnprocessableEntity,
				"spec.secretName", "a public client has no secret")
		})
	})
})
