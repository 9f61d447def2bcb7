package controllers_test

import (
	"fmt"
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
	"github.com/tenancy-dev/tenancy/internal/apikey"
)

var _ = Describe("APIKey controller", func() {
	var org *tenancyv1.Organization

	BeforeEach(func(ctx SpecContext) {
		org = &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("keyorg")}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
	})

	newKey := func(name string, role tenancyv1.Role) *tenancyv1.APIKey {
		return &tenancyv1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: org.Name},
			Spec:       tenancyv1.APIKeySpec{Role: role},
		}
	}
	keySecret := func(ctx SpecContext, k *tenancyv1.APIKey) *corev1.Secret {
		GinkgoHelper()
		secret := &corev1.Secret{}
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: k.SecretNameOrDefault()}, secret)
		}).WithContext(ctx).Should(Succeed())
		return secret
	}

	// appearsInDatabase counts the rows of every tenancy table whose text contains s.
	appearsInDatabase := func(ctx SpecContext, s string) int {
		GinkgoHelper()
		rows, err := sqlPool.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tenancy' AND table_type = 'BASE TABLE'")
		Expect(err).NotTo(HaveOccurred())
		tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		Expect(err).NotTo(HaveOccurred())
		Expect(tables).To(ContainElements("api_keys", "audit_log"))
		total := 0
		for _, t := range tables {
			total += countRows(ctx, "SELECT count(*) FROM tenancy."+pgx.Identifier{t}.Sanitize()+" x WHERE strpos(x::text, $1) > 0", s)
		}
		return total
	}

	It("issues a well-formed key into its Secret and stores only its hash", func(ctx SpecContext) {
		k := newKey("ci", tenancyv1.RoleMember)
		Expect(k8sClient.Create(ctx, k)).To(Succeed())
		eventuallyReady(ctx, k)
		secret := keySecret(ctx, k)
		Expect(metav1.IsControlledBy(secret, k)).To(BeTrue())
		key := string(secret.Data["apiKey"])
		keyID, err := apikey.Parse(key)
		Expect(err).NotTo(HaveOccurred(), "key %s… must parse", key[:8])
		Expect(string(secret.Data["keyID"])).To(Equal(keyID))
		Expect(k.Status.KeyID).To(Equal(keyID))
		Expect(k.Status.Prefix).To(Equal("tnc_" + keyID))
		Expect(k.Status.RotatedAt).NotTo(BeNil())

		Expect(apiKeyRow(ctx, "k.id = $1", k.Status.ID)).To(MatchFields(IgnoreExtras, Fields{
			"UID":            Equal(string(k.UID)),
			"KeyID":          Equal(keyID),
			"Hash":           Equal(sha256Of([]byte(key))),
			"Role":           Equal("Member"),
			"OrganizationID": PointTo(Equal(org.Status.ID)),
			"RevokedAt":      BeNil(),
			"ExpiresAt":      BeNil(),
		}))
		Expect(appearsInDatabase(ctx, key)).To(BeZero(), "the key must appear nowhere in the database")
		Expect(appearsInDatabase(ctx, key[len("tnc_")+len(keyID)+1:len(key)-6])).To(BeZero(), "nor its secret part")

		var events corev1.EventList
		Expect(k8sClient.List(ctx, &events, client.InNamespace(org.Name))).To(Succeed())
		for _, e := range events.Items {
			Expect(e.Message).NotTo(ContainSubstring(key[len("tnc_")+len(keyID)+1:]), "events never contain a key")
		}
	})

	It("rotates on spec.rotation and keeps the old key working for the grace period", func(ctx SpecContext) {
		k := newKey("deploy", tenancyv1.RoleAdmin)
		Expect(k8sClient.Create(ctx, k)).To(Succeed())
		eventuallyReady(ctx, k)
		oldKey := string(keySecret(ctx, k).Data["apiKey"])
		oldID := k.Status.KeyID

		Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) { k.Spec.Rotation = "2026-11" })).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(k), k)).To(Succeed())
			g.Expect(k.Status.KeyID).NotTo(Equal(oldID))
			g.Expect(string(keySecret(ctx, k).Data["keyID"])).To(Equal(k.Status.KeyID))
		}).WithContext(ctx).Should(Succeed())
		newKeyValue := string(keySecret(ctx, k).Data["apiKey"])
		Expect(newKeyValue).NotTo(Equal(oldKey))

		now := time.Now()
		Expect(apiKeyRow(ctx, "k.hash = $1", sha256Of([]byte(oldKey)))).To(MatchFields(IgnoreExtras, Fields{
			"SupersededAt": Not(BeNil()),
			"RevokedAt":    BeNil(),
			"ExpiresAt": PointTo(SatisfyAll(
				BeTemporally(">=", now.Add(rotationGrace-time.Minute)),
				BeTemporally("<=", now.Add(rotationGrace)),
			)),
		}), "the old key lives out its grace period")
		Expect(apiKeyRow(ctx, "k.hash = $1", sha256Of([]byte(newKeyValue)))).To(MatchFields(IgnoreExtras, Fields{
			"SupersededAt": BeNil(),
			"Rotation":     Equal("2026-11"),
		}))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.rotated' AND details->>'previousKeyID' = $1",
			oldID)).To(Equal(1))
	})

	It("records expiry and role changes without rotating", func(ctx SpecContext) {
		k := newKey("reporting", tenancyv1.RoleViewer)
		expires := metav1.NewTime(time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second))
		k.Spec.ExpiresAt = &expires
		Expect(k8sClient.Create(ctx, k)).To(Succeed())
		eventuallyReady(ctx, k)
		Expect(k.Status.ExpiresAt.Time).To(BeTemporally("==", expires.Time))
		Expect(apiKeyRow(ctx, "k.id = $1", k.Status.ID)).To(HaveField("ExpiresAt", PointTo(BeTemporally("==", expires.Time))))
		keyID := k.Status.KeyID

		Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) { k.Spec.Role = tenancyv1.RoleMember })).To(Succeed())
		eventuallyReady(ctx, k)
		Expect(k.Status.KeyID).To(Equal(keyID))
		Expect(apiKeyRow(ctx, "k.id = $1", k.Status.ID)).To(HaveField("Role", "Member"))
	})

	It("rotates, with an Event and an audit entry, when its Secret is deleted by hand", func(ctx SpecContext) {
		k := newKey("lost", tenancyv1.RoleMember)
		Expect(k8sClient.Create(ctx, k)).To(Succeed())
		eventuallyReady(ctx, k)
		oldID := k.Status.KeyID
		Expect(k8sClient.Delete(ctx, keySecret(ctx, k))).To(Succeed())

		Eventually(func(g Gomega) {
			g.Expect(string(keySecret(ctx, k).Data["keyID"])).NotTo(Equal(oldID))
		}).WithContext(ctx).Should(Succeed())
		Eventually(func(g Gomega) {
			var events corev1.EventList
			g.Expect(k8sClient.List(ctx, &events, client.InNamespace(org.Name))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(HaveField("InvolvedObject.UID", k.UID), HaveField("Reason", "SecretDeleted"))))
		}).WithContext(ctx).Should(Succeed())
		Expect(countRows(ctx, `SELECT count(*) FROM tenancy.audit_log WHERE action = 'apikey.rotated'
		                       AND details->>'reason' = 'its Secret was deleted' AND details->>'previousKeyID' = $1`, oldID)).To(Equal(1))
	})

	It("never overwrites a Secret it did not create", func(ctx SpecContext) {
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "taken-apikey", Namespace: org.Name},
			StringData: map[string]string{"apiKey": "not ours"},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		k := newKey("taken", tenancyv1.RoleMember)
		Expect(k8sClient.Create(ctx, k)).To(Succeed())
		cond := eventuallyCondition(ctx, k, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.SecretConflictReason)
		Expect(cond.Message).To(ContainSubstring("Secret taken-apikey exists and was not created for this object"))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(foreign), foreign)).To(Succeed())
		Expect(string(foreign.Data["apiKey"])).To(Equal("not ours"))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.api_keys WHERE uid = $1", string(k.UID))).To(Equal(0))
	})

	It("revokes every key at once when deleted and keeps the rows for audit", func(ctx SpecContext) {
		k := newKey("temp", tenancyv1.RoleMember)
		Expect(k8sClient.Create(ctx, k)).To(Succeed())
		eventuallyReady(ctx, k)
		Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) { k.Spec.Rotation = "again" })).To(Succeed())
		Eventually(func() int {
			return countRows(ctx, "SELECT count(*) FROM tenancy.api_keys WHERE uid = $1", string(k.UID))
		}).WithContext(ctx).Should(Equal(2))

		Expect(k8sClient.Delete(ctx, k)).To(Succeed())
		eventuallyGone(ctx, k)
		revokedBy := time.Now()
		Expect(apiKeyRows(ctx, "k.uid = $1", string(k.UID))).To(SatisfyAll(
			HaveLen(2),
			HaveEach(HaveField("RevokedAt", PointTo(BeTemporally("<=", revokedBy)))),
		), "both the current and the rotated-out key are revoked")
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: org.Name, Name: "temp-apikey"}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

	It("mails the organization's Owners and Admins once when a key is within 7 days of its expiry, again when the expiry moves", func(ctx SpecContext) {
		owner, admin, member := uniqueName("keyowner")+"@example.com", uniqueName("keyadmin")+"@example.com", uniqueName("keymember")+"@example.com"
		for i, person := range []struct {
			email string
			role  tenancyv1.Role
		}{{owner, tenancyv1.RoleOwner}, {admin, tenancyv1.RoleAdmin}, {member, tenancyv1.RoleMember}} {
			_, err := sqlPool.Exec(ctx, `INSERT INTO tenancy.users (email, email_verified_at) VALUES ($1, now())`, person.email)
			Expect(err).NotTo(HaveOccurred())
			m := &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("person-%d", i), Namespace: org.Name},
				Spec: tenancyv1.MembershipSpec{User: person.email, Role: person.role}}
			Expect(k8sClient.Create(ctx, m)).To(Succeed())
			eventuallyReady(ctx, m)
			Expect(m.Status.State).To(Equal(tenancyv1.MembershipActive))
		}
		noticed := func() int {
			return countRows(ctx, "SELECT count(*) FROM tenancy.mail_outbox WHERE kind = 'api_key_expiring' AND recipient = ANY($1)",
				[]string{owner, admin, member})
		}

		k := newKey("soon", tenancyv1.RoleMember)
		in3Days := metav1.NewTime(time.Now().Add(3 * 24 * time.Hour).Truncate(time.Second))
		k.Spec.ExpiresAt = &in3Days
		Expect(k8sClient.Create(ctx, k)).To(Succeed())
		eventuallyReady(ctx, k)
		for _, to := range []string{owner, admin} {
			msg := mailpit.WaitForMessage(GinkgoT(), ctx, to, "API key soon of "+org.Name+" expires in")
			Expect(msg.Subject).To(MatchRegexp(`expires in (2|3) days`))
		}
		Eventually(noticed).WithContext(ctx).Should(Equal(2))
		Consistently(noticed).WithContext(ctx).WithTimeout(2*resyncPeriod).Should(Equal(2), "once, not at every resync; and not to a Member")

		// Far away again: nothing; then close again: a new notice.
		Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) {
			later := metav1.NewTime(time.Now().Add(60 * 24 * time.Hour))
			k.Spec.ExpiresAt = &later
		})).To(Succeed())
		eventuallyReady(ctx, k)
		Consistently(noticed).WithContext(ctx).WithTimeout(2 * resyncPeriod).Should(Equal(2))
		Expect(patchSpec(ctx, k, func(k *tenancyv1.APIKey) {
			soon := metav1.NewTime(time.Now().Add(2 * 24 * time.Hour))
			k.Spec.ExpiresAt = &soon
		})).To(Succeed())
		Eventually(noticed).WithContext(ctx).Should(Equal(4))
	})
})
