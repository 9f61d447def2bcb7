package selfservice_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/pquerna/otp/totp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// chromiumPath is Debian's Chromium, installed by hack/chromium.sh when missing.
func chromiumPath() string {
	GinkgoHelper()
	if path := os.Getenv("TENANCY_CHROMIUM"); path != "" {
		return path
	}
	out, err := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "chromium.sh")).Output()
	Expect(err).NotTo(HaveOccurred(), "hack/chromium.sh")
	return strings.TrimSpace(string(out))
}

// browser drives one headless Chromium; it keeps a screenshot of every step and writes them
// under .test-output/browser/<spec> (or $TENANCY_TEST_OUTPUT) when the spec fails, or always
// with TENANCY_TEST_SCREENSHOTS=always (to look at the pages).
type browser struct {
	ctx   context.Context
	shots []screenshot
}

type screenshot struct {
	step string
	png  []byte
}

func newBrowser() *browser {
	GinkgoHelper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath()),
		chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(GinkgoT().TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	Expect(chromedp.Do(ctx)).To(Succeed(), "starting Chromium")
	b := &browser{ctx: ctx}
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() || os.Getenv("TENANCY_TEST_SCREENSHOTS") == "always" {
			b.saveScreenshots()
		}
		cancel()
		cancelAlloc()
	})
	return b
}

// step runs actions with a deadline and keeps a screenshot of the page they leave.
func (b *browser) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	GinkgoHelper()
	By(name)
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	err := chromedp.Do(ctx, actions...)
	// Bounded too: a screenshot taken while a page loads may wait for it forever.
	shotCtx, cancelShot := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancelShot()
	if png, shotErr := chromedp.Run(shotCtx, chromedp.FullScreenshot(100)); shotErr == nil {
		b.shots = append(b.shots, screenshot{step: name, png: png})
	}
	Expect(err).NotTo(HaveOccurred(), "step %q", name)
}

// read runs an action that reads the page.
func read[T any](b *browser, action chromedp.Action[T]) T {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	Expect(err).NotTo(HaveOccurred())
	return v
}

func (b *browser) text(sel string) string {
	GinkgoHelper()
	return read(b, chromedp.Text(chromedp.CSS(sel)))
}

func (b *browser) value(sel string) string {
	GinkgoHelper()
	return read(b, chromedp.Value(chromedp.CSS(sel)))
}

func (b *browser) saveScreenshots() {
	dir := os.Getenv("TENANCY_TEST_OUTPUT")
	if dir == "" {
		dir = filepath.Join(testenv.RepoRoot(), ".test-output")
	}
	dir = filepath.Join(dir, "browser", regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(CurrentSpecReport().LeafNodeText, "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		GinkgoWriter.Printf("screenshots: %v\n", err)
		return
	}
	for i, shot := range b.shots {
		name := fmt.Sprintf("%02d-%s.png", i+1, regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(shot.step, "-"))
		_ = os.WriteFile(filepath.Join(dir, name), shot.png, 0o644)
	}
	GinkgoWriter.Printf("screenshots of %d steps in %s\n", len(b.shots), dir)
}

// path reads the page's path.
func (b *browser) path() string {
	GinkgoHelper()
	u, err := url.Parse(read(b, chromedp.Location()))
	Expect(err).NotTo(HaveOccurred())
	return u.Path
}

// choose selects value in a <select> and lets the page react as to a person's choice (the
// change event). Right after a navigation the page's document may not be reachable yet, hence
// the retries.
func choose(sel, value string) chromedp.Action[chromedp.Void] {
	dispatch := fmt.Sprintf(`(() => {
		const s = document.querySelector(%q);
		if (!s) return false;
		s.dispatchEvent(new Event("change", {bubbles: true}));
		return true;
	})()`, sel)
	return chromedp.Steps(
		chromedp.SetValue(chromedp.CSS(sel), value),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			for {
				if sent, err := chromedp.Evaluate[bool](dispatch)(ctx, t); err != nil || sent {
					return err
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
		}),
	)
}

var _ = Describe("The web pages in a browser", func() {
	It("take an invited Admin from the invitation link to an API key that works", func(ctx SpecContext) {
		t := newTenant(ctx)
		second := newTenant(ctx)
		newbie := uniqueName("newbie") + "@example.com"
		invite := &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns(), Name: uniqueName("newbie")},
			Spec: tenancyv1.MembershipSpec{User: newbie, Role: tenancyv1.RoleAdmin}}
		Expect(admin.Create(ctx, invite)).To(Succeed())
		var link string
		Eventually(func(g Gomega) {
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(invite), invite)).To(Succeed())
			g.Expect(invite.Status.InviteSecretName).NotTo(BeEmpty())
			var secret corev1.Secret
			g.Expect(admin.Get(ctx, types.NamespacedName{Namespace: t.ns(), Name: invite.Status.InviteSecretName}, &secret)).To(Succeed())
			link = string(secret.Data[tenancyv1.InvitationURLKey])
		}).WithContext(ctx).Should(Succeed())
		Expect(link).To(HavePrefix(authdURL + "/invite?token="))

		b := newBrowser()
		b.step("open the invitation link and choose a password",
			chromedp.Navigate(link),
			chromedp.WaitVisible(chromedp.CSS("#invite-form")),
		)
		text := b.text("main")
		Expect(text).To(ContainSubstring("Join " + t.org.Name))
		Expect(text).To(ContainSubstring("You are invited as Admin"))
		b.step("accept the invitation",
			chromedp.SendKeys(chromedp.CSS("#password"), password),
			chromedp.SendKeys(chromedp.CSS("#confirm"), password),
			chromedp.Click(chromedp.CSS("#accept")),
			chromedp.WaitVisible(chromedp.CSS("#flash")),
		)
		text = b.text("#flash")
		Expect(text).To(Equal("Welcome to " + t.org.Name + "."))
		Expect(b.path()).To(Equal("/orgs/" + t.org.Name + "/members"))
		Eventually(func(g Gomega) {
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(invite), invite)).To(Succeed())
			g.Expect(invite.Status.State).To(Equal(tenancyv1.MembershipActive))
		}).WithContext(ctx).Should(Succeed())

		b.step("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
		Expect(b.path()).To(Equal("/login"))

		// The newbie belongs to a second organization too (its invitation accepted with their password:
		// the first link proved no mailbox, so the newbie is not verified).
		addMember(ctx, second.ns(), newbie, tenancyv1.RoleMember, "")
		b.step("log in",
			chromedp.SendKeys(chromedp.CSS("#email"), newbie),
			chromedp.SendKeys(chromedp.CSS("#password"), password),
			chromedp.Click(chromedp.CSS("#login-submit")),
			chromedp.WaitVisible(chromedp.CSS("#memberships")),
		)
		text = b.text("#memberships")
		Expect(b.path()).To(Equal("/account"))
		Expect(text).To(And(ContainSubstring(t.org.Name), ContainSubstring(second.org.Name), ContainSubstring("Admin"), ContainSubstring("Member")))

		b.step("switch to the second organization",
			choose("#org-selector", second.org.Name),
			chromedp.WaitVisible(chromedp.CSS("#members")),
		)
		text = b.text("#members")
		Expect(b.path()).To(Equal("/orgs/" + second.org.Name + "/members"))
		Expect(text).To(ContainSubstring(second.owner))
		Expect(read(b, chromedp.Evaluate[int](`document.querySelectorAll("#invite-member").length`))).To(Equal(0), "a Member gets no invitation form")

		b.step("switch back to the first organization",
			choose("#org-selector", t.org.Name),
			chromedp.WaitVisible(chromedp.CSS("#invite-member")),
		)
		Expect(b.path()).To(Equal("/orgs/" + t.org.Name + "/members"))

		colleague := uniqueName("colleague") + "@example.com"
		b.step("invite a member",
			chromedp.SendKeys(chromedp.CSS("#member-email"), colleague),
			chromedp.SetValue(chromedp.CSS("#member-role"), "Member"),
			chromedp.Click(chromedp.CSS("#invite-submit")),
			chromedp.WaitVisible(chromedp.CSS("#invited")),
		)
		invitationURL := b.value("#invitation-url")
		text = b.text("#members")
		Expect(invitationURL).To(HavePrefix(authdURL + "/invite?token="))
		Expect(text).To(ContainSubstring(colleague))

		b.step("see the webhook refuse an Admin granting Owner",
			chromedp.SendKeys(chromedp.CSS("#member-email"), "chief@example.com"),
			chromedp.SetValue(chromedp.CSS("#member-role"), "Owner"),
			chromedp.Click(chromedp.CSS("#invite-submit")),
			chromedp.WaitVisible(chromedp.CSS("#problem")),
		)
		text = b.text("#problem")
		Expect(text).To(ContainSubstring("spec.role: Forbidden: " + newbie + " is Admin in " + t.org.Name + " and cannot grant Owner"))
		Expect(text).To(ContainSubstring("spec.role"))

		b.step("create an API key and copy it",
			chromedp.Navigate(authdURL+"/orgs/"+t.org.Name+"/apikeys"),
			chromedp.WaitVisible(chromedp.CSS("#new-key")),
			chromedp.SendKeys(chromedp.CSS("#key-name"), "from-the-browser"),
			chromedp.SetValue(chromedp.CSS("#key-role"), "Viewer"),
			chromedp.Click(chromedp.CSS("#create-key")),
			chromedp.WaitVisible(chromedp.CSS("#issued")),
			chromedp.Click(chromedp.CSS("#issued button[data-copy]")),
		)
		key := b.value("#issued-key")
		keyID := b.text("#issued-key-id")
		copied := b.text("#issued button[data-copy]")
		Expect(key).To(HavePrefix("tnc_"))
		Expect(copied).To(Equal("Copied"))
		Expect(clientCredentials(keyID, key)).To(Equal(http.StatusOK), "the shown key trades for a token")

		b.step("reload the keys: the key is not shown again",
			chromedp.Navigate(authdURL+"/orgs/"+t.org.Name+"/apikeys"),
			chromedp.WaitVisible(chromedp.CSS("#apikeys")),
		)
		text = read(b, chromedp.OuterHTML(chromedp.CSS("main")))
		Expect(text).To(ContainSubstring("from-the-browser"))
		Expect(text).NotTo(ContainSubstring(key))

		b.step("rotate the key: the new one is shown once",
			chromedp.Click(chromedp.CSS(`tr[data-key="from-the-browser"] button.secondary`)),
			chromedp.WaitVisible(chromedp.CSS("#issued")),
		)
		rotated := b.value("#issued-key")
		Expect(rotated).To(And(HavePrefix("tnc_"), Not(Equal(key))))
		Expect(clientCredentials(b.text("#issued-key-id"), rotated)).To(Equal(http.StatusOK))

		b.step("read the audit log",
			chromedp.Click(chromedp.CSS(`a[href$="/audit"]`)),
			chromedp.WaitVisible(chromedp.CSS("#audit")),
		)
		// The operator's rows name the newbie: authd acted as them.
		Eventually(func() string {
			b.step("reload the audit log", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#audit")))
			return b.text("#audit")
		}).WithContext(ctx).Should(And(MatchRegexp(newbie+`\s+apikey.issued\s+`), MatchRegexp(newbie+`\s+membership.created\s+membership/`)))

		b.step("log out at the end", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
		b.step("the account page needs a login again",
			chromedp.Navigate(authdURL+"/account"),
			chromedp.WaitVisible(chromedp.CSS("#login-form")),
		)
		Expect(b.path()).To(Equal("/login"))
	})

	It("take a person who forgot their password from the login page through the mailed link to a login with the new one", func(ctx SpecContext) {
		t := newTenant(ctx)
		email := uniqueName("forgetful") + "@example.com"
		addMember(ctx, t.ns(), email, tenancyv1.RoleMember, "")
		before := post("/auth/login", "", map[string]string{"email": email, "password": password})
		Expect(before.StatusCode).To(Equal(http.StatusOK))

		b := newBrowser()
		b.step("ask for a reset link from the login page",
			chromedp.Navigate(authdURL+"/login"),
			chromedp.Click(chromedp.CSS("#forgot-link")),
			chromedp.WaitVisible(chromedp.CSS("#forgot-form")),
			chromedp.SendKeys(chromedp.CSS("#email"), email),
			chromedp.Click(chromedp.CSS("#forgot-submit")),
			chromedp.WaitVisible(chromedp.CSS("#forgot-sent")),
		)
		Expect(b.text("#forgot-sent")).To(ContainSubstring("If an account has this address"))

		msg := mailpit.WaitForMessage(GinkgoT(), ctx, email, "Reset your password")
		detail, err := mailpit.Message(ctx, msg.ID)
		Expect(err).NotTo(HaveOccurred())
		link, ok := testenv.FirstLink(detail.Text, authdURL+"/reset?token=")
		Expect(ok).To(BeTrue(), detail.Text)

		const newPassword = "a fresh and long passphrase"
		b.step("open the mailed link and choose a new password",
			chromedp.Navigate(link),
			chromedp.WaitVisible(chromedp.CSS("#reset-form")),
			chromedp.SendKeys(chromedp.CSS("#password"), newPassword),
			chromedp.SendKeys(chromedp.CSS("#confirm"), newPassword),
			chromedp.Click(chromedp.CSS("#reset-submit")),
			chromedp.WaitVisible(chromedp.CSS("#login-form")),
		)
		Expect(b.text("#flash")).To(ContainSubstring("Your password is changed"))
		b.step("log in with the new password",
			chromedp.SendKeys(chromedp.CSS("#email"), email),
			chromedp.SendKeys(chromedp.CSS("#password"), newPassword),
			chromedp.Click(chromedp.CSS("#login-submit")),
			chromedp.WaitVisible(chromedp.CSS("#email-verified")),
		)
		Expect(b.path()).To(Equal("/account"))

		Expect(post("/auth/login", "", map[string]string{"email": email, "password": password}).StatusCode).To(Equal(http.StatusUnauthorized))
		Expect(post("/auth/refresh", "", map[string]string{"refresh_token": before.Body["refresh_token"].(string)}).StatusCode).
			To(Equal(http.StatusBadRequest), "the session from before the reset ended")
		b.step("the used link does not work again",
			chromedp.Navigate(link),
			chromedp.WaitVisible(chromedp.CSS("#problem")),
		)
		Expect(b.text("#problem")).To(ContainSubstring("unknown, already used or expired"))
	})

	It("enrol an authenticator from the account page, then log in with its code and once with a recovery code", func(ctx SpecContext) {
		t := newTenant(ctx)
		email := uniqueName("twofactor") + "@example.com"
		addMember(ctx, t.ns(), email, tenancyv1.RoleMember, "")

		b := newBrowser()
		logIn := func(name string) {
			b.step(name,
				chromedp.Navigate(authdURL+"/login"),
				chromedp.WaitVisible(chromedp.CSS("#login-form")),
				chromedp.SendKeys(chromedp.CSS("#email"), email),
				chromedp.SendKeys(chromedp.CSS("#password"), password),
				chromedp.Click(chromedp.CSS("#login-submit")),
			)
		}
		logIn("log in with the password alone")
		b.step("start the enrolment on the account page",
			chromedp.WaitVisible(chromedp.CSS("#mfa-disabled")),
			chromedp.Click(chromedp.CSS(`#mfa form button`)),
			chromedp.WaitVisible(chromedp.CSS("#totp-qr")),
		)
		Eventually(func() int {
			return read(b, chromedp.Evaluate[int](`document.querySelector('#totp-qr').naturalWidth`))
		}).WithContext(ctx).Should(Equal(240), "the QR code is drawn by authd and allowed by the page's CSP")
		secret := b.text("#totp-secret")
		enrolled := time.Now()
		code, err := totp.GenerateCode(secret, enrolled)
		Expect(err).NotTo(HaveOccurred())
		b.step("type the authenticator's code",
			chromedp.SendKeys(chromedp.CSS("#totp-code"), code),
			chromedp.Click(chromedp.CSS("#mfa-confirm")),
			chromedp.WaitVisible(chromedp.CSS("#recovery-codes")),
		)
		codes := strings.Fields(b.text("#recovery-codes"))
		Expect(codes).To(HaveLen(10))

		b.step("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
		logIn("log in again: the password is not enough")
		next, err := totp.GenerateCode(secret, enrolled.Add(30*time.Second))
		Expect(err).NotTo(HaveOccurred())
		b.step("give the next code",
			chromedp.WaitVisible(chromedp.CSS("#mfa-form")),
			chromedp.SendKeys(chromedp.CSS("#otp"), next),
			chromedp.Click(chromedp.CSS("#mfa-submit")),
			chromedp.WaitVisible(chromedp.CSS("#mfa-enabled")),
		)
		Expect(b.path()).To(Equal("/account"))

		useRecoveryCode := func(name string) {
			b.step("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
			logIn("log in for " + name)
			b.step(name,
				chromedp.WaitVisible(chromedp.CSS("#mfa-form")),
				chromedp.Click(chromedp.CSS("#mfa-form summary")),
				chromedp.SendKeys(chromedp.CSS("#recovery_code"), strings.ToUpper(codes[0])),
				chromedp.Click(chromedp.CSS("#mfa-submit")),
				chromedp.WaitVisible(chromedp.CSS("#mfa-enabled, #problem")),
			)
		}
		useRecoveryCode("use a recovery code")
		Expect(b.path()).To(Equal("/account"), "the recovery code let us in")
		useRecoveryCode("use the same recovery code again")
		Expect(b.path()).To(Equal("/login/mfa"))
		Expect(b.text("#problem")).To(ContainSubstring("wrong, expired or already used"))
	})

	It("delete an account from the account page, with its confirmation, and refuse the last Owner", func(ctx SpecContext) {
		t := newTenant(ctx)
		b := newBrowser()
		logIn := func(email string) {
			b.step("log in as "+email,
				chromedp.Navigate(authdURL+"/login"),
				chromedp.WaitVisible(chromedp.CSS("#login-form")),
				chromedp.SendKeys(chromedp.CSS("#email"), email),
				chromedp.SendKeys(chromedp.CSS("#password"), password),
				chromedp.Click(chromedp.CSS("#login-submit")),
				chromedp.WaitVisible(chromedp.CSS("#delete-account-form")),
			)
		}
		deleteAccount := func(name, confirmation string) {
			b.step(name,
				chromedp.SendKeys(chromedp.CSS("#delete-confirm-email"), confirmation),
				chromedp.SendKeys(chromedp.CSS("#delete-password"), password),
				chromedp.Click(chromedp.CSS("#delete-account-submit")),
				chromedp.WaitVisible(chromedp.CSS("#problem, #login-form")),
			)
		}

		logIn(t.owner)
		deleteAccount("the last Owner cannot delete the account", t.owner)
		Expect(b.text("#problem")).To(ContainSubstring("is the last Owner of " + t.org.Name))
		b.step("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))

		logIn(t.member)
		deleteAccount("a confirmation that is not the address changes nothing", "yes please")
		Expect(b.text("#problem")).To(ContainSubstring("type your address"))
		Expect(userExists(ctx, t.member)).To(BeTrue())
		deleteAccount("confirm with the address and the password", t.member)
		Expect(b.path()).To(Equal("/login"))
		Expect(b.text("#flash")).To(ContainSubstring("Your account is deleted"))
		b.step("the account page needs a login again",
			chromedp.Navigate(authdURL+"/account"),
			chromedp.WaitVisible(chromedp.CSS("#login-form")),
		)
		Expect(post("/auth/login", "", map[string]string{"email": t.member, "password": password}).StatusCode).To(Equal(http.StatusUnauthorized))
		Eventually(func() bool { return userExists(ctx, t.member) }).WithContext(ctx).Should(BeFalse())
		Expect(membershipsOf(ctx, t.ns(), t.member)).To(BeEmpty())
	})
})
