package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

func TestOwnStatusWritesWaitForTheCacheToCatchUp(t *testing.T) {
	var w ownStatusWrites
	key := types.NamespacedName{Namespace: "acme", Name: "web"}
	at := func(rv string) *tenancyv1.Project {
		return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "web", ResourceVersion: rv}}
	}
	if w.cacheBehind(key, at("10")) {
		t.Fatal("behind before any patch")
	}
	w.patched(key, "10", "10")
	if w.cacheBehind(key, at("10")) {
		t.Fatal("behind after a patch that changed nothing: the reconcile would wait forever")
	}
	w.patched(key, "10", "11")
	if !w.cacheBehind(key, at("10")) {
		t.Fatal("not behind while the cache still shows the version the patch replaced")
	}
	if w.cacheBehind(key, at("11")) {
		t.Fatal("behind once the cache shows the patch")
	}
	if w.cacheBehind(key, at("10")) {
		t.Fatal("the entry outlived the cache catching up")
	}
	w.patched(key, "11", "12")
	w.forget(key)
	if w.cacheBehind(key, at("11")) {
		t.Fatal("behind after the object was forgotten")
	}
}

func TestBriefWaitStaysQuietLongerWhileTheBlockerIsQueued(t *testing.T) {
	created := func(ago time.Duration) *tenancyv1.Project {
		return &tenancyv1.Project{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(time.Now().Add(-ago))}}
	}
	reconciledOrg := &tenancyv1.Organization{}
	reconciledOrg.Status.Conditions = []metav1.Condition{{Type: tenancyv1.ReadyCondition, Status: metav1.ConditionFalse}}
	queuedOrg := &tenancyv1.Organization{}
	onQueued := waitingOn(queuedOrg, tenancyv1.OrganizationNotReadyReason, "queued")
	onReconciled := waitingOn(reconciledOrg, tenancyv1.OrganizationNotReadyReason, "failing")
	cases := []struct {
		name string
		obj  *tenancyv1.Project
		err  error
		want bool
	}{
		{"new object, any blocker", created(time.Second), onReconciled, true},
		{"past the grace, blocker reconciled", created(time.Minute), onReconciled, false},
		{"past the grace, blocker never reconciled", created(time.Minute), onQueued, true},
		{"past the longer grace", created(queuedBlockerGrace + time.Second), onQueued, false},
		{"another reason", created(time.Second), waiting("NamespaceTerminating", "x"), false},
	}
	for _, c := range cases {
		if got := briefWait(c.obj, c.err); got != c.want {
			t.Errorf("%s: briefWait = %v, want %v", c.name, got, c.want)
		}
	}
	reported := created(time.Second)
	reported.Status.Conditions = []metav1.Condition{{Type: tenancyv1.ReadyCondition, Status: metav1.ConditionFalse}}
	if briefWait(reported, onQueued) {
		t.Error("an object that has reported a status waits quietly")
	}
}
