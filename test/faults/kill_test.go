package faults_test

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	killOrganizations = 30
	killProjects      = 10 // per organization
)

var _ = Describe("The manager killed", func() {
	It("converges exactly once after SIGKILL during creations and deletions, and a further pass changes nothing", func(ctx SpecContext) {
		s := newStack(ctx, newDatabase(ctx))
		s.startControllerManager()
		opts := managerOptions{resyncPeriod: time.Hour}
		m := s.startManager("manager-1", opts)
		s.waitForWebhooks(ctx)

		By(fmt.Sprintf("creating %d organizations with %d projects, 3 memberships and 2 API keys each", killOrganizations, killProjects))
		var orgs, namespaced []client.Object
		for i := range killOrganizations {
			name := fmt.Sprintf("org-%02d", i)
			orgs = append(orgs, organization(name))
			namespaced = append(namespaced, tenantObjects(name, killProjects)...)
		}
		totalProjects := killOrganizations * killProjects
		created := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			err := applyAll(ctx, s.kube, orgs)
			if err == nil {
				err = applyAll(ctx, s.kube, namespaced)
			}
			created <- err
		}()

		By("killing the manager once a third of the projects have rows")
		Eventually(rowCount(ctx, s, "SELECT count(*) FROM tenancy.projects")).
			WithContext(ctx).WithPolling(20 * time.Millisecond).Should(BeNumerically(">=", totalProjects/3))
		m.Kill()
		rowsAtKill := countRows(ctx, s, "SELECT count(*) FROM tenancy.projects")
		Expect(rowsAtKill).To(BeNumerically("<", totalProjects), "the kill must come while the manager still has work")
		m = s.startManager("manager-2", opts)
		Expect(<-created).To(Succeed())

		Eventually(func(g Gomega) {
			expectAllReady(g, ctx, s.kube)
			expectRowsMatch(g, ctx, s)
		}).WithContext(ctx).Should(Succeed())
		Expect(countRows(ctx, s, "SELECT count(*) FROM tenancy.projects")).To(Equal(totalProjects))

		By("deleting 5 organizations, 5 projects in 10 others, and a membership and a key in 10 more")
		var doomed []client.Object
		for i := range 5 {
			doomed = append(doomed, organization(fmt.Sprintf("org-%02d", i)))
		}
		for i := 5; i < 15; i++ {
			for p := 5; p < killProjects; p++ {
				doomed = append(doomed, project(fmt.Sprintf("org-%02d", i), fmt.Sprintf("p%d", p)))
			}
		}
		for i := 15; i < 25; i++ {
			org := fmt.Sprintf("org-%02d", i)
			doomed = append(doomed, membership(org, "viewer", "", "", ""), apiKey(org, "reader", "", ""))
		}
		deleted := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			deleted <- deleteAll(ctx, s.kube, doomed)
		}()
		remainingProjects := totalProjects - 5*killProjects - 10*(killProjects-5)
		Eventually(rowCount(ctx, s, "SELECT count(*) FROM tenancy.projects")).
			WithContext(ctx).WithPolling(20 * time.Millisecond).Should(BeNumerically("<=", totalProjects-(totalProjects-remainingProjects)/3))
		m.Kill()
		Expect(countRows(ctx, s, "SELECT count(*) FROM tenancy.projects")).To(BeNumerically(">", remainingProjects),
			"the kill must come while the manager still has deletions to finish")
		m = s.startManager("manager-3", opts)
		Expect(<-deleted).To(Succeed())

		Eventually(func(g Gomega) {
			for _, obj := range doomed {
				err := s.kube.Get(ctx, client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object))
				g.Expect(err).To(MatchError(apierrors.IsNotFound, "IsNotFound"), "%s %s/%s is still there", kindOf(obj), obj.GetNamespace(), obj.GetName())
			}
			for i := range 5 {
				var ns corev1.Namespace
				err := s.kube.Get(ctx, client.ObjectKey{Name: fmt.Sprintf("org-%02d", i)}, &ns)
				g.Expect(err).To(MatchError(apierrors.IsNotFound, "IsNotFound"), "namespace org-%02d is still there", i)
			}
			expectAllReady(g, ctx, s.kube)
			expectRowsMatch(g, ctx, s)
		}).WithContext(ctx).Should(Succeed())
		Expect(countRows(ctx, s, "SELECT count(*) FROM tenancy.projects")).To(Equal(remainingProjects))

		By("restarting the manager once more: its pass over every object writes nothing")
		Eventually(func(g Gomega) { expectPassDone(g, ctx, s, m) }).WithContext(ctx).Should(Succeed())
		before := currentState(ctx, s)
		m.Kill()
		m = s.startManager("manager-4", opts)
		Eventually(func(g Gomega) { expectPassDone(g, ctx, s, m) }).WithContext(ctx).Should(Succeed())
		changes := currentState(ctx, s).changesSince(before)
		Expect(changes).To(BeEmpty(), "%d changes, the first: %s", len(changes), strings.Join(changes[:min(len(changes), 20)], "; "))
	}, SpecTimeout(10*time.Minute))
})
