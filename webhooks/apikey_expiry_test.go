package webhooks_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/webhooks"
)

var _ = Describe("API key expiry", func() {
	It("is a year ahead when a key is created without one, and nobody removes it", func(ctx SpecContext) {
		org := newOrganization(ctx, "expiring", tenancyv1.TierPro)
		ns := org.Name
		bob := membership(ns, "bob", orgAdmin, tenancyv1.RoleAdmin, "")
		Expect(admin.Create(ctx, bob)).To(Succeed())
		eventuallyReady(ctx, bob)

		before := time.Now()
		key := apiKey(ns, "ci", tenancyv1.RoleMember, "")
		Expect(as(orgAdmin).Create(ctx, key)).To(Succeed())
		after := time.Now()
		Expect(key.Spec.ExpiresAt).NotTo(BeNil(), "a key created without spec.expiresAt gets one")
		// The API server keeps whole seconds.
		Expect(key.Spec.ExpiresAt.Time).To(BeTemporally(">", before.Add(webhooks.MaxAPIKeyLifetime-time.Second)))
		Expect(key.Spec.ExpiresAt.Time).To(BeTemporally("<=", after.Add(webhooks.MaxAPIKeyLifetime)))
		eventuallyReady(ctx, key)
		Expect(key.Status.ExpiresAt.Time).To(BeTemporally("==", key.Spec.ExpiresAt.Time))
		Expect(currentKeyExpiringAt(ctx, key, key.Spec.ExpiresAt.Time)).To(Equal(1), "the key's row expires then")

		removeExpiry := func(c client.Client, opts ...client.PatchOption) error {
			latest := &tenancyv1.APIKey{}
			Expect(admin.Get(ctx, client.ObjectKeyFromObject(key), latest)).To(Succeed())
			removed := latest.DeepCopy()
			removed.Spec.ExpiresAt = nil
			return c.Patch(ctx, removed, client.MergeFrom(latest), opts...)
		}
		cannotRemove := MatchError(ContainSubstring(
			"spec.expiresAt: Forbidden: cannot be removed: every API key expires at most a year ahead; set a date no later than "))
		for who, c := range map[string]client.Client{"the organization's Admin": as(orgAdmin), "a platform admin": admin} {
			Expect(removeExpiry(c, client.DryRunAll)).To(cannotRemove, "%s, dry run", who)
			Expect(removeExpiry(c)).To(cannotRemove, who)
		}
		Expect(admin.Get(ctx, client.ObjectKeyFromObject(key), key)).To(Succeed())
		Expect(key.Spec.ExpiresAt).NotTo(BeNil())

		By("it may move, but no further than a year from now")
		move := func(to time.Time) error {
			moved := key.DeepCopy()
			moved.Spec.ExpiresAt = &metav1.Time{Time: to}
			return as(orgAdmin).Patch(ctx, moved, client.MergeFrom(key))
		}
		Expect(move(time.Now().Add(webhooks.MaxAPIKeyLifetime + 24*time.Hour))).To(MatchError(ContainSubstring(
			"spec.expiresAt: Invalid value")))
		sooner := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
		Expect(move(sooner)).To(Succeed())
		Eventually(func() int { return currentKeyExpiringAt(ctx, key, sooner) }).WithContext(ctx).Should(Equal(1))

		By("a manifest without it, applied again, keeps the default")
		manifest := func(role tenancyv1.Role) *unstructured.Unstructured {
			return &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": tenancyv1.GroupVersion.String(), "kind": "APIKey",
				"metadata": map[string]any{"name": "deploy", "namespace": ns},
				"spec":     map[string]any{"role": string(role)},
			}}
		}
		applied := manifest(tenancyv1.RoleMember)
		Expect(admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(applied), client.FieldOwner("gitops"))).To(Succeed())
		expiresAt, found, err := unstructured.NestedString(applied.Object, "spec", "expiresAt")
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeTrue(), "an applied key gets an expiry too")
		reapplied := manifest(tenancyv1.RoleViewer)
		Expect(admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(reapplied), client.FieldOwner("gitops"))).To(Succeed())
		kept, _, err := unstructured.NestedString(reapplied.Object, "spec", "expiresAt")
		Expect(err).NotTo(HaveOccurred())
		Expect(kept).To(Equal(expiresAt))
	})
})

// currentKeyExpiringAt counts the current key rows of k that expire at t.
func currentKeyExpiringAt(ctx context.Context, k *tenancyv1.APIKey, t time.Time) int {
	GinkgoHelper()
	var n int
	Expect(sqlPool.QueryRow(ctx, "SELECT count(*) FROM tenancy.api_keys WHERE uid = $1 AND superseded_at IS NULL AND expires_at = $2",
		string(k.UID), t).Scan(&n)).To(Succeed())
	return n
}
