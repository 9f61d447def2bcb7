package tenant

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

type synced struct {
	toolscache.ResourceEventHandlerRegistration
}

func (synced) HasSynced() bool { return true }

func TestCensusCountsDistinctLiveKeys(t *testing.T) {
	c := &Census{
		key:          func(o client.Object) string { return o.(*tenancyv1.Membership).Spec.User },
		registration: synced{},
		counts:       map[string]map[string]int{},
	}
	m := func(ns, name, user string) *tenancyv1.Membership {
		return &tenancyv1.Membership{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: tenancyv1.MembershipSpec{User: user}}
	}
	count := func(ns, key string) (int, bool) {
		t.Helper()
		n, has, err := c.Count(context.Background(), ns, key)
		if err != nil {
			t.Fatal(err)
		}
		return n, has
	}

	aliceOrg, aliceWeb, bob := m("acme", "alice", "alice@x"), m("acme", "alice-web", "alice@x"), m("acme", "bob", "bob@x")
	for _, o := range []*tenancyv1.Membership{aliceOrg, aliceWeb, bob, m("other", "carol", "carol@x")} {
		c.add(o, 1)
	}
	if n, has := count("acme", "alice@x"); n != 2 || !has {
		t.Fatalf("acme: %d users (alice counted: %t), want 2 and true", n, has)
	}

	// An object being deleted stops counting at the update that marks it.
	deleting := aliceOrg.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	c.add(aliceOrg, -1)
	c.add(deleting, 1)
	if n, has := count("acme", "alice@x"); n != 2 || !has {
		t.Fatalf("alice still has a live membership: %d users, alice counted %t", n, has)
	}
	c.add(aliceWeb, -1)
	if n, has := count("acme", "alice@x"); n != 1 || has {
		t.Fatalf("after alice's last live membership: %d users, alice counted %t; want 1, false", n, has)
	}
	c.add(bob, -1)
	if n, _ := count("acme", ""); n != 0 || len(c.counts) != 1 {
		t.Fatalf("an emptied namespace is forgotten: %d users, %d namespaces", n, len(c.counts))
	}
}
