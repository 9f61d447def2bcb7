package controllers_test

import (
	"encoding/hex"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("Membership controller", func() {
	var (
		org  *tenancyv1.Organization
		proj *tenancyv1.Project
	)

	BeforeEach(func(ctx SpecContext) {
		org = &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("memorg")}}
		Expect(k8sClient.Create(ctx, org)).To(Succeed())
		eventuallyReady(ctx, org)
		proj = &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: org.Name}}
		Expect(k8sClient.Create(ctx, proj)).To(Succeed())
		eventuallyReady(ctx, proj)
	})

	// newMembership asks for delivery by Link: these specs read the token from the Secret. The
	// suite's manager sends mail, so a membership that does not choose is mailed (see below).
	newMembership := func(name, user string, role tenancyv1.Role, project string) *tenancyv1.Membership {
		return &tenancyv1.Membership{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: org.Name},
			Spec: tenancyv1.MembershipSpec{User: user, Role: role, Project: project,
				Invitation: &tenancyv1.InvitationSpec{Delivery: tenancyv1.InvitationByLink}},
		}
	}
	inviteSecret := func(ctx SpecContext, m *tenancyv1.Membership) *corev1.Secret {
		GinkgoHelper()
		secret := &corev1.Secret{}
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Name + "-invite"}, secret)
		}).WithContext(ctx).Should(Succeed())
		return secret
	}

	It("invites a new user with a hashed single-use token and counts the member", func(ctx SpecContext) {
		m := newMembership("alice", "  Alice@Example.COM ", tenancyv1.RoleAdmin, "")
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		eventuallyReady(ctx, m)
		Expect(m.Status.State).To(Equal(tenancyv1.MembershipInvited))
		Expect(m.Status.InviteSecretName).To(Equal("alice-invite"))
		Expect(m.Status.UserID).NotTo(BeEmpty())
		Expect(membershipRow(ctx, "m.id = $1", m.Status.ID)).To(MatchFields(IgnoreExtras, Fields{
			"UID":            Equal(string(m.UID)),
			"Email":          Equal("alice@example.com"),
			"UserID":         Equal(m.Status.UserID),
			"Role":           Equal("Admin"),
			"State":          Equal("Invited"),
			"ProjectID":      BeNil(),
			"OrganizationID": Equal(org.Status.ID),
		}))

		secret := inviteSecret(ctx, m)
		token := secret.Data["token"]
		Expect(len(token)).To(BeNumerically(">=", 43), "256 bits, base64url")
		Expect(string(secret.Data["url"])).To(Equal(publicURL + "/invite?token=" + string(token)))
		Expect(metav1.IsControlledBy(secret, m)).To(BeTrue())
		now := time.Now()
		Expect(invitationRow(ctx, "i.hash = $1", sha256Of(token))).To(MatchFields(IgnoreExtras, Fields{
			"MembershipID": Equal(m.Status.ID),
			"UsedAt":       BeNil(),
			"ExpiresAt": SatisfyAll(
				BeTemporally(">=", now.Add(7*24*time.Hour-time.Hour)),
				BeTemporally("<=", now.Add(7*24*time.Hour+time.Minute)),
			),
		}))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations i WHERE strpos(i::text, $1) > 0", string(token))).To(Equal(0),
			"the token itself is never stored")

		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(org), org)).To(Succeed())
			g.Expect(org.Status.Members).To(Equal(int32(1)))
		}).WithContext(ctx).Should(Succeed())
	})

	It("scopes a membership to a project and follows role changes", func(ctx SpecContext) {
		m := newMembership("bob-web", "bob@example.com", tenancyv1.RoleViewer, proj.Name)
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		eventuallyReady(ctx, m)
		Expect(membershipRow(ctx, "m.id = $1", m.Status.ID)).To(MatchFields(IgnoreExtras, Fields{
			"ProjectID": PointTo(Equal(proj.Status.ID)),
			"Role":      Equal("Viewer"),
		}))

		orgWide := newMembership("bob", "bob@example.com", tenancyv1.RoleMember, "")
		Expect(k8sClient.Create(ctx, orgWide)).To(Succeed())
		eventuallyReady(ctx, orgWide)
		Expect(orgWide.Status.UserID).To(Equal(m.Status.UserID), "one user row per email")

		Expect(patchSpec(ctx, m, func(m *tenancyv1.Membership) { m.Spec.Role = tenancyv1.RoleAdmin })).To(Succeed())
		eventuallyReady(ctx, m)
		Expect(membershipRow(ctx, "m.id = $1", m.Status.ID)).To(HaveField("Role", "Admin"))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'membership.updated' AND target = 'membership/bob-web'")).
			To(Equal(1))
	})

	It("stalls a second membership of the same user in the same scope, naming the first", func(ctx SpecContext) {
		first := newMembership("carol", "carol@example.com", tenancyv1.RoleMember, "")
		Expect(k8sClient.Create(ctx, first)).To(Succeed())
		eventuallyReady(ctx, first)
		second := newMembership("carol-again", "CAROL@example.com", tenancyv1.RoleAdmin, "")
		Expect(k8sClient.Create(ctx, second)).To(Succeed())
		cond := eventuallyCondition(ctx, second, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.DuplicateMembershipReason)
		Expect(cond.Message).To(ContainSubstring("carol@example.com already has a membership in this scope: Membership carol"))
	})

	It("makes a verified user Active at once, without an invitation", func(ctx SpecContext) {
		_, err := sqlPool.Exec(ctx, `INSERT INTO tenancy.users (email, password_hash, email_verified_at)
			VALUES ('dave@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', now())`)
		Expect(err).NotTo(HaveOccurred())
		m := newMembership("dave", "dave@example.com", tenancyv1.RoleMember, "")
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		eventuallyReady(ctx, m)
		Expect(m.Status.State).To(Equal(tenancyv1.MembershipActive))
		Expect(m.Status.InviteSecretName).To(BeEmpty())
		err = k8sClient.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: "dave-invite"}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

	It("invites a user whose password was set through a link, unverified, like one without a password", func(ctx SpecContext) {
		_, err := sqlPool.Exec(ctx, "INSERT INTO tenancy.users (email, password_hash) VALUES ('elsa@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA')")
		Expect(err).NotTo(HaveOccurred())
		m := newMembership("elsa", "elsa@example.com", tenancyv1.RoleMember, "")
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		eventuallyReady(ctx, m)
		Expect(m.Status.State).To(Equal(tenancyv1.MembershipInvited))
		Expect(m.Status.InviteSecretName).To(Equal("elsa-invite"))

		By("a platform admin vouches for the email: the user is verified and the membership Active")
		m.Annotations = map[string]string{tenancyv1.EmailVerifiedAnnotation: "true"}
		Expect(k8sClient.Update(ctx, m)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(m), m)).To(Succeed())
			g.Expect(m.Status.State).To(Equal(tenancyv1.MembershipActive))
		}).WithContext(ctx).Should(Succeed())
		var verified bool
		Expect(sqlPool.QueryRow(ctx, "SELECT email_verified_at IS NOT NULL FROM tenancy.users WHERE email = 'elsa@example.com'").Scan(&verified)).To(Succeed())
		Expect(verified).To(BeTrue())
	})

	It("shows an accepted invitation as Active and removes its Secret", func(ctx SpecContext) {
		m := newMembership("erin", "erin@example.com", tenancyv1.RoleMember, "")
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		eventuallyReady(ctx, m)
		inviteSecret(ctx, m)

		// What authd's /auth/invitations/accept does to the rows.
		_, err := sqlPool.Exec(ctx, "UPDATE tenancy.memberships SET state = 'Active' WHERE id = $1", m.Status.ID)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(m), m)).To(Succeed())
			g.Expect(m.Status.State).To(Equal(tenancyv1.MembershipActive))
			g.Expect(m.Status.InviteSecretName).To(BeEmpty())
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: "erin-invite"}, &corev1.Secret{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
		}).WithContext(ctx).Should(Succeed())
	})

	It("issues a fresh invitation on the reinvite annotation and when the Secret is deleted", func(ctx SpecContext) {
		m := newMembership("frank", "frank@example.com", tenancyv1.RoleViewer, "")
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		eventuallyReady(ctx, m)
		first := inviteSecret(ctx, m).Data["token"]

		Expect(patchSpec(ctx, m, func(m *tenancyv1.Membership) {
			m.Annotations = map[string]string{tenancyv1.ReinviteAnnotation: "1"}
		})).To(Succeed())
		var second []byte
		Eventually(func(g Gomega) {
			second = inviteSecret(ctx, m).Data["token"]
			g.Expect(second).NotTo(Equal(first))
		}).WithContext(ctx).Should(Succeed())
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE membership_id = $1", m.Status.ID)).To(Equal(1),
			"the old invitation is void")
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE hash = $1", sha256Of(second))).To(Equal(1))

		Expect(k8sClient.Delete(ctx, inviteSecret(ctx, m))).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(inviteSecret(ctx, m).Data["token"]).NotTo(Equal(second))
		}).WithContext(ctx).Should(Succeed())
	})

	It("issues a new invitation when an invited member is promoted", func(ctx SpecContext) {
		m := newMembership("jack", "jack@example.com", tenancyv1.RoleMember, "")
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		eventuallyReady(ctx, m)
		readableByAdmins := inviteSecret(ctx, m).Data["token"]
		Expect(patchSpec(ctx, m, func(m *tenancyv1.Membership) { m.Spec.Role = tenancyv1.RoleOwner })).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(inviteSecret(ctx, m).Data["token"]).NotTo(Equal(readableByAdmins))
		}).WithContext(ctx).Should(Succeed())
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE hash = $1", sha256Of(readableByAdmins))).To(Equal(0),
			"the token Admins could read no longer works for an Owner")
	})

	It("never overwrites a Secret it did not create", func(ctx SpecContext) {
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "grace-invite", Namespace: org.Name},
			StringData: map[string]string{"token": "somebody else's"},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		m := newMembership("grace", "grace@example.com", tenancyv1.RoleMember, "")
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		cond := eventuallyCondition(ctx, m, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.SecretConflictReason)
		Expect(cond.Message).To(ContainSubstring("Secret grace-invite exists and was not created for this object"))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(foreign), foreign)).To(Succeed())
		Expect(string(foreign.Data["token"])).To(Equal("somebody else's"))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE membership_id = $1", m.Status.ID)).To(Equal(0),
			"no invitation is recorded that nobody could receive")
	})

	It("deletes the row, the invitation and the user's sessions in the organization with the last membership", func(ctx SpecContext) {
		web := newMembership("henry-web", "henry@example.com", tenancyv1.RoleMember, proj.Name)
		all := newMembership("henry", "henry@example.com", tenancyv1.RoleViewer, "")
		Expect(k8sClient.Create(ctx, web)).To(Succeed())
		Expect(k8sClient.Create(ctx, all)).To(Succeed())
		eventuallyReady(ctx, web)
		eventuallyReady(ctx, all)
		_, err := sqlPool.Exec(ctx, `INSERT INTO tenancy.refresh_tokens (hash, family_id, user_id, organization_id, expires_at, family_expires_at)
		                             VALUES (sha256('henry-session'::bytea), gen_random_uuid(), $1, $2, now() + interval '1 day', now() + interval '30 days')`,
			all.Status.UserID, org.Status.ID)
		Expect(err).NotTo(HaveOccurred())
		liveSessions := func() int {
			return countRows(ctx, "SELECT count(*) FROM tenancy.refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL", all.Status.UserID)
		}

		Expect(k8sClient.Delete(ctx, web)).To(Succeed())
		eventuallyGone(ctx, web)
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.memberships WHERE uid = $1", string(web.UID))).To(Equal(0))
		Expect(liveSessions()).To(Equal(1), "another membership in the organization remains")

		Expect(k8sClient.Delete(ctx, all)).To(Succeed())
		eventuallyGone(ctx, all)
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.memberships WHERE uid = $1", string(all.UID))).To(Equal(0))
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE membership_id = $1", all.Status.ID)).To(Equal(0))
		Expect(liveSessions()).To(Equal(0), "no session outlives the last membership")
		err = k8sClient.Get(ctx, client.ObjectKey{Namespace: org.Name, Name: "henry-invite"}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
		Expect(countRows(ctx, "SELECT count(*) FROM tenancy.audit_log WHERE action = 'membership.deleted' AND target = 'membership/henry'")).
			To(Equal(1))
	})

	It("stalls on a project that does not exist, and recovers when it appears", func(ctx SpecContext) {
		m := newMembership("ivy", "ivy@example.com", tenancyv1.RoleMember, "later")
		Expect(k8sClient.Create(ctx, m)).To(Succeed())
		cond := eventuallyCondition(ctx, m, tenancyv1.StalledCondition, metav1.ConditionTrue, tenancyv1.ProjectNotFoundReason)
		Expect(cond.Message).To(HavePrefix("spec.project: Project later does not exist"))
		Expect(k8sClient.Create(ctx, &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Name: "later", Namespace: org.Name}})).To(Succeed())
		eventuallyReady(ctx, m)
	})

	Context("when the operator sends mail", func() {
		mailed := func(name, user string, role tenancyv1.Role) *tenancyv1.Membership {
			return &tenancyv1.Membership{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: org.Name},
				Spec:       tenancyv1.MembershipSpec{User: user, Role: role},
			}
		}
		// mailedToken waits for an invitation to address with a subject naming the
		// organization, and returns the token in its link.
		mailedToken := func(ctx SpecContext, address string) string {
			GinkgoHelper()
			msg := mailpit.WaitForMessage(GinkgoT(), ctx, address, "You are invited to "+org.Name)
			detail, err := mailpit.Message(ctx, msg.ID)
			Expect(err).NotTo(HaveOccurred())
			link, ok := testenv.FirstLink(detail.Text, publicURL+"/invite?token=")
			Expect(ok).To(BeTrue(), "the invitation links to authd's page: %s", detail.Text)
			Expect(detail.HTML).To(ContainSubstring(`href="` + link + `"`))
			return strings.TrimPrefix(link, publicURL+"/invite?token=")
		}

		It("mails the invitation by default, and the Secret holds no usable token", func(ctx SpecContext) {
			m := mailed("mia", "Mia@Example.com", tenancyv1.RoleAdmin)
			Expect(k8sClient.Create(ctx, m)).To(Succeed())
			eventuallyReady(ctx, m)
			Expect(m.Status.State).To(Equal(tenancyv1.MembershipInvited))
			Expect(m.Status.InviteSecretName).To(Equal("mia-invite"))

			token := mailedToken(ctx, "mia@example.com")
			Expect(len(token)).To(BeNumerically(">=", 43), "256 bits, base64url")
			secret := inviteSecret(ctx, m)
			Expect(secret.Data).NotTo(HaveKey(tenancyv1.InvitationTokenKey))
			Expect(secret.Data).NotTo(HaveKey(tenancyv1.InvitationURLKey))
			Expect(string(secret.Data[tenancyv1.InvitationDeliveryKey])).To(Equal("Email"))
			Expect(string(secret.Data[tenancyv1.InvitationSentToKey])).To(Equal("mia@example.com"))
			Expect(string(secret.Data[tenancyv1.InvitationTokenHashKey])).To(Equal(hex.EncodeToString(sha256Of([]byte(token)))))
			for _, value := range secret.Data {
				Expect(string(value)).NotTo(ContainSubstring(token), "Admins read this Secret: it must not hold the token")
			}
			Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE hash = $1 AND emailed AND used_at IS NULL", sha256Of([]byte(token)))).
				To(Equal(1))
			Eventually(func() int {
				return countRows(ctx, `SELECT count(*) FROM tenancy.mail_outbox WHERE recipient = 'mia@example.com' AND kind = 'invitation'
					AND sent_at IS NOT NULL AND body_text IS NULL AND body_html IS NULL`)
			}).WithContext(ctx).Should(Equal(1), "the sent mail keeps no link in the database")

			// A later reconcile (the resync) keeps the mailed invitation: no second mail.
			Consistently(func() int {
				return countRows(ctx, "SELECT count(*) FROM tenancy.mail_outbox WHERE recipient = 'mia@example.com'")
			}).WithContext(ctx).WithTimeout(2 * resyncPeriod).Should(Equal(1))
		})

		It("mails a new invitation on the reinvite annotation, and writes a link when delivery turns to Link", func(ctx SpecContext) {
			m := mailed("noah", "noah@example.com", tenancyv1.RoleMember)
			Expect(k8sClient.Create(ctx, m)).To(Succeed())
			eventuallyReady(ctx, m)
			first := mailedToken(ctx, "noah@example.com")
			Expect(mailpit.DeleteAll(ctx)).To(Succeed())

			Expect(patchSpec(ctx, m, func(m *tenancyv1.Membership) {
				m.Annotations = map[string]string{tenancyv1.ReinviteAnnotation: "1"}
			})).To(Succeed())
			second := mailedToken(ctx, "noah@example.com")
			Expect(second).NotTo(Equal(first))
			Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE hash = $1", sha256Of([]byte(first)))).To(Equal(0),
				"the first mailed link no longer works")

			Expect(patchSpec(ctx, m, func(m *tenancyv1.Membership) {
				m.Spec.Invitation = &tenancyv1.InvitationSpec{Delivery: tenancyv1.InvitationByLink}
			})).To(Succeed())
			var link []byte
			Eventually(func(g Gomega) {
				link = inviteSecret(ctx, m).Data[tenancyv1.InvitationTokenKey]
				g.Expect(link).NotTo(BeEmpty())
			}).WithContext(ctx).Should(Succeed())
			Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE membership_id = $1 AND used_at IS NULL", m.Status.ID)).To(Equal(1))
			Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE hash = $1 AND NOT emailed", sha256Of(link))).To(Equal(1))
			Expect(countRows(ctx, "SELECT count(*) FROM tenancy.invitations WHERE hash = $1", sha256Of([]byte(second)))).To(Equal(0),
				"the mailed link no longer works once an admin can read a new one")
		})
	})
})
