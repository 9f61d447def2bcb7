package webhooks_test

import (
	"context"
	"errors"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// The people of the authority fixture, by their role in its organization.
const (
	platformAdmin = "" // the suite's cluster admin, in system:masters
	owner         = "alice@example.com"
	orgAdmin      = "bob@example.com"
	member        = "carol@example.com"
	viewer        = "dave@example.com"
	webAdmin      = "pat@example.com" // Admin of project web only
	outsider      = "eve@example.com"
)

// outcome is what a request should get: allowed (code 0), or refused with an HTTP code, the
// field path and a sentence ({org} stands for the organization's name).
type outcome struct {
	code    int32
	field   string
	message string
}

var allowed = outcome{}

func invalid(field, message string) outcome   { return outcome{422, field, message} }
func forbidden(field, message string) outcome { return outcome{403, field, message} }

// request builds, for an organization namespace, the objects a platform admin creates first and
// the request under test.
type request func(ns string) (setup []client.Object, send func(ctx context.Context, c client.Client, dryRun bool) error)

// creating sends the create of the object build returns.
func creating(build func(ns string) client.Object) request {
	return func(ns string) ([]client.Object, func(context.Context, client.Client, bool) error) {
		obj := build(ns)
		return nil, func(ctx context.Context, c client.Client, dryRun bool) error {
			o := obj.DeepCopyObject().(client.Object)
			if dryRun {
				return c.Create(ctx, o, client.DryRunAll)
			}
			return c.Create(ctx, o)
		}
	}
}

// changing has a platform admin create the object build returns, then sends mutate as a patch.
func changing[T client.Object](build func(ns string) T, mutate func(T)) request {
	return func(ns string) ([]client.Object, func(context.Context, client.Client, bool) error) {
		obj := build(ns)
		return []client.Object{obj}, func(ctx context.Context, c client.Client, dryRun bool) error {
			changed := obj.DeepCopyObject().(T)
			mutate(changed)
			if dryRun {
				return c.Patch(ctx, changed, client.MergeFrom(obj), client.DryRunAll)
			}
			return c.Patch(ctx, changed, client.MergeFrom(obj))
		}
	}
}

// deleting has a platform admin create the object build returns, then sends its deletion.
func deleting(build func(ns string) client.Object) request {
	return func(ns string) ([]client.Object, func(context.Context, client.Client, bool) error) {
		obj := build(ns)
		return []client.Object{obj}, func(ctx context.Context, c client.Client, dryRun bool) error {
			if dryRun {
				return c.Delete(ctx, obj.DeepCopyObject().(client.Object), client.DryRunAll)
			}
			return c.Delete(ctx, obj.DeepCopyObject().(client.Object))
		}
	}
}

// newMember is a Membership for a user not in the organization yet.
func newMember(role tenancyv1.Role, project string) func(ns string) *tenancyv1.Membership {
	return func(ns string) *tenancyv1.Membership {
		name := uniqueName("m")
		return membership(ns, name, name+"@example.com", role, project)
	}
}

func asObject[T client.Object](build func(ns string) T) func(ns string) client.Object {
	return func(ns string) client.Object { return build(ns) }
}

func newKey(role tenancyv1.Role, project string, expiresIn time.Duration) func(ns string) client.Object {
	return func(ns string) client.Object {
		k := apiKey(ns, uniqueName("key"), role, project)
		if expiresIn != 0 {
			k.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(expiresIn)}
		}
		return k
	}
}

func setRole(r tenancyv1.Role) func(*tenancyv1.Membership) {
	return func(m *tenancyv1.Membership) { m.Spec.Role = r }
}

var _ = Describe("Authority and structure", Ordered, func() {
	var org *tenancyv1.Organization

	BeforeAll(func(ctx SpecContext) {
		org = newOrganization(ctx, "acme", tenancyv1.TierPro)
		ns := org.Name
		fixture := []tenancyv1.Object{
			&tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}},
			&tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "api"}},
			membership(ns, "alice", owner, tenancyv1.RoleOwner, ""),
			membership(ns, "bob", orgAdmin, tenancyv1.RoleAdmin, ""),
			membership(ns, "bob-api", orgAdmin, tenancyv1.RoleMember, "api"),
			membership(ns, "carol", member, tenancyv1.RoleMember, ""),
			membership(ns, "dave", viewer, tenancyv1.RoleViewer, ""),
			membership(ns, "pat", webAdmin, tenancyv1.RoleAdmin, "web"),
		}
		for _, obj := range fixture {
			Expect(admin.Create(ctx, obj)).To(Succeed())
		}
		for _, obj := range fixture {
			eventuallyReady(ctx, obj)
		}
	})

	DescribeTable("decides each request the same way, dry run or not",
		func(ctx SpecContext, who string, req request, want outcome) {
			setup, send := req(org.Name)
			for _, obj := range setup {
				Expect(admin.Create(ctx, obj)).To(Succeed())
			}
			c := admin
			if who != platformAdmin {
				c = as(who)
			}
			for _, dryRun := range []bool{true, false} {
				err := send(ctx, c, dryRun)
				if want.code == 0 {
					Expect(err).NotTo(HaveOccurred(), "dry run: %t", dryRun)
					continue
				}
				Expect(err).To(HaveOccurred(), "dry run: %t", dryRun)
				var status apierrors.APIStatus
				Expect(errors.As(err, &status)).To(BeTrue(), "dry run: %t: %v", dryRun, err)
				Expect(status.Status().Code).To(Equal(want.code), "dry run: %t: %v", dryRun, err)
				Expect(err.Error()).To(ContainSubstring(want.field+": "), "dry run: %t", dryRun)
				Expect(err.Error()).To(ContainSubstring(strings.ReplaceAll(want.message, "{org}", org.Name)), "dry run: %t", dryRun)
			}
		},
		// Memberships: who may grant what.
		Entry("a platform admin grants Owner", platformAdmin, creating(asObject(newMember(tenancyv1.RoleOwner, ""))), allowed),
		Entry("an Owner grants Owner", owner, creating(asObject(newMember(tenancyv1.RoleOwner, ""))), allowed),
		Entry("an Admin grants Admin", orgAdmin, creating(asObject(newMember(tenancyv1.RoleAdmin, ""))), allowed),
		Entry("an Admin grants Member", orgAdmin, creating(asObject(newMember(tenancyv1.RoleMember, ""))), allowed),
		Entry("an Admin cannot grant Owner", orgAdmin, creating(asObject(newMember(tenancyv1.RoleOwner, ""))),
			invalid("spec.role", "Forbidden: bob@example.com is Admin in {org} and cannot grant Owner")),
		Entry("a Member cannot add members", member, creating(asObject(newMember(tenancyv1.RoleViewer, ""))),
			invalid("metadata.namespace", "Forbidden: carol@example.com is Member in {org} and needs at least Admin there to create memberships")),
		Entry("a Viewer cannot add members", viewer, creating(asObject(newMember(tenancyv1.RoleViewer, ""))),
			invalid("metadata.namespace", "dave@example.com is Viewer in {org} and needs at least Admin")),
		Entry("an outsider cannot add members", outsider, creating(asObject(newMember(tenancyv1.RoleMember, ""))),
			invalid("metadata.namespace", "eve@example.com has no role in {org} and needs at least Admin")),
		Entry("a project Admin adds Members to its project", webAdmin, creating(asObject(newMember(tenancyv1.RoleMember, "web"))), allowed),
		Entry("a project Admin grants Admin in its project", webAdmin, creating(asObject(newMember(tenancyv1.RoleAdmin, "web"))), allowed),
		Entry("a project Admin cannot add members to another project", webAdmin, creating(asObject(newMember(tenancyv1.RoleMember, "api"))),
			invalid("spec.project", "pat@example.com has no role in project api of {org} and needs at least Admin")),
		Entry("a project Admin cannot add organization members", webAdmin, creating(asObject(newMember(tenancyv1.RoleMember, ""))),
			invalid("metadata.namespace", "pat@example.com has no role in {org}")),
		// Memberships: changing and removing.
		Entry("an Admin promotes a Member to Admin", orgAdmin, changing(newMember(tenancyv1.RoleMember, ""), setRole(tenancyv1.RoleAdmin)), allowed),
		Entry("an Admin cannot promote a Member to Owner", orgAdmin, changing(newMember(tenancyv1.RoleMember, ""), setRole(tenancyv1.RoleOwner)),
			invalid("spec.role", "bob@example.com is Admin in {org} and cannot grant Owner")),
		Entry("an Admin cannot demote an Owner", orgAdmin, changing(newMember(tenancyv1.RoleOwner, ""), setRole(tenancyv1.RoleAdmin)),
			invalid("spec.role", "bob@example.com is Admin in {org} and cannot demote an Owner")),
		Entry("an Owner demotes another Owner", owner, changing(newMember(tenancyv1.RoleOwner, ""), setRole(tenancyv1.RoleMember)), allowed),
		Entry("an Admin cannot raise their own role, even within their reach", orgAdmin,
			changing(func(ns string) *tenancyv1.Membership {
				return membership(ns, uniqueName("bob-web"), orgAdmin, tenancyv1.RoleViewer, "web")
			}, setRole(tenancyv1.RoleAdmin)),
			invalid("spec.role", "bob@example.com cannot raise their own role (Viewer to Admin)")),
		Entry("an Admin cannot grant themselves a project membership", orgAdmin, creating(func(ns string) client.Object {
			return membership(ns, uniqueName("bob-again"), orgAdmin, tenancyv1.RoleAdmin, "web")
		}), invalid("spec.user", "bob@example.com cannot grant themselves a membership")),
		Entry("an Admin removes a Member", orgAdmin, deleting(asObject(newMember(tenancyv1.RoleMember, ""))), allowed),
		Entry("an Admin cannot remove an Owner", orgAdmin, deleting(asObject(newMember(tenancyv1.RoleOwner, ""))),
			forbidden("spec.role", "bob@example.com is Admin in {org} and cannot remove an Owner")),
		Entry("a Member cannot remove anyone", member, deleting(asObject(newMember(tenancyv1.RoleViewer, ""))),
			forbidden("metadata.namespace", "carol@example.com is Member in {org} and needs at least Admin there to delete memberships")),
		// API keys.
		Entry("an Admin creates an Admin key", orgAdmin, creating(newKey(tenancyv1.RoleAdmin, "", 0)), allowed),
		Entry("a project Admin creates a key for its project", webAdmin, creating(newKey(tenancyv1.RoleMember, "web", 0)), allowed),
		Entry("a project Admin cannot create an organization key", webAdmin, creating(newKey(tenancyv1.RoleViewer, "", 0)),
			invalid("metadata.namespace", "pat@example.com has no role in {org} and needs at least Admin there to create API keys")),
		Entry("a Member cannot create keys", member, creating(newKey(tenancyv1.RoleViewer, "", 0)),
			invalid("metadata.namespace", "carol@example.com is Member in {org}")),
		Entry("a key is never Owner, even for a platform admin", platformAdmin, creating(newKey(tenancyv1.RoleOwner, "", 0)),
			invalid("spec.role", "API keys are never Owner")),
		Entry("a key cannot expire in the past", orgAdmin, creating(newKey(tenancyv1.RoleMember, "", -time.Hour)),
			invalid("spec.expiresAt", "must be in the future")),
		Entry("a key cannot live more than a year, even for a platform admin", platformAdmin, creating(newKey(tenancyv1.RoleMember, "", 2*365*24*time.Hour)),
			invalid("spec.expiresAt", "must be at most a year ahead")),
		Entry("an Admin deletes a key", orgAdmin, deleting(newKey(tenancyv1.RoleAdmin, "", 0)), allowed),
		Entry("a Viewer cannot delete a key", viewer, deleting(newKey(tenancyv1.RoleViewer, "", 0)),
			forbidden("metadata.namespace", "dave@example.com is Viewer in {org} and needs at least Admin there to delete API keys")),
		// Projects.
		Entry("an Admin creates a project", orgAdmin, creating(func(ns string) client.Object {
			return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: uniqueName("p")}}
		}), allowed),
		Entry("a project Admin cannot create projects", webAdmin, creating(func(ns string) client.Object {
			return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: uniqueName("p")}}
		}), invalid("metadata.namespace", "pat@example.com has no role in {org} and needs at least Admin there to create projects")),
		// Structure, for platform admins too.
		Entry("a membership names an existing project", platformAdmin, creating(asObject(newMember(tenancyv1.RoleMember, "nope"))),
			invalid("spec.project", `Not found: "nope"`)),
		Entry("a user has one membership per scope", platformAdmin, creating(func(ns string) client.Object {
			return membership(ns, uniqueName("again"), "  Carol@Example.com ", tenancyv1.RoleAdmin, "")
		}), invalid("spec.user", "already has a role in {org} through Membership carol")),
		Entry("tenancy objects live in an organization's namespace", platformAdmin, creating(func(string) client.Object {
			return membership("default", uniqueName("stray"), "x@example.com", tenancyv1.RoleMember, "")
		}), invalid("metadata.namespace", "namespace default is bound to no organization")),
		Entry("an organization cannot take another's namespace", platformAdmin, creating(func(ns string) client.Object {
			return &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("squatter")}, Spec: tenancyv1.OrganizationSpec{Namespace: ns}}
		}), invalid("spec.namespace", "already belongs to organization {org}")),
		Entry("an organization cannot take kube-system", platformAdmin, creating(func(string) client.Object {
			return &tenancyv1.Organization{ObjectMeta: metav1.ObjectMeta{Name: uniqueName("system")}, Spec: tenancyv1.OrganizationSpec{Namespace: "kube-system"}}
		}), invalid("spec.namespace", "namespace kube-system belongs to the cluster or the operator")),
	)
})
