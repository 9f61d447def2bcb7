package faults_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("The leader killed", func() {
	It("hands the work to the other replica, which finishes it", func(ctx SpecContext) {
		s := newStack(ctx, newDatabase(ctx))
		opts := managerOptions{resyncPeriod: time.Hour, leaderElect: true}

		// envtest has no Service to spread webhook calls over both replicas: the webhook
		// configuration calls the standby, which serves webhooks without leading and outlives the
		// leader; the leader serves its webhooks on a port of its own.
		leaderPort, err := testenv.FreePort()
		Expect(err).NotTo(HaveOccurred())
		leaderOpts := opts
		leaderOpts.webhookPort = leaderPort

		By("starting the first replica and waiting for it to lead")
		leader := s.startManager("replica-a", leaderOpts)
		first := eventuallyLeaseHolder(ctx, s, "")

		By("starting a second replica, which waits")
		standby := s.startManager("replica-b", opts)
		s.waitForWebhooks(ctx)
		Consistently(func() string { return leaseHolder(ctx, s) }).WithContext(ctx).WithTimeout(3 * time.Second).Should(Equal(first))

		By("creating 10 organizations with 10 projects each, and killing the leader midway")
		var orgs, namespaced []client.Object
		for i := range 10 {
			name := fmt.Sprintf("team-%d", i)
			orgs = append(orgs, organization(name))
			namespaced = append(namespaced, tenantObjects(name, 10)...)
		}
		Expect(applyAll(ctx, s.kube, orgs)).To(Succeed())
		created := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			created <- applyAll(ctx, s.kube, namespaced)
		}()
		Eventually(rowCount(ctx, s, "SELECT count(*) FROM tenancy.projects")).
			WithContext(ctx).WithPolling(20 * time.Millisecond).Should(BeNumerically(">=", 20))
		samples, err := metrics(ctx, standby.metricsURL)
		Expect(err).NotTo(HaveOccurred())
		Expect(reconciles(samples, "project")).To(BeZero(), "the standby must not reconcile while it does not lead")
		leader.Kill()
		Expect(countRows(ctx, s, "SELECT count(*) FROM tenancy.projects")).To(BeNumerically("<", 100),
			"the kill must come while the leader still has work")
		Expect(<-created).To(Succeed())

		By("the standby taking the lease over and finishing")
		eventuallyLeaseHolder(ctx, s, first)
		Expect(strings.Contains(standby.Log(), "Successfully acquired lease")).To(BeTrue(), "the standby's log says it took the lease")
		Eventually(func(g Gomega) {
			expectAllReady(g, ctx, s.kube)
			expectRowsMatch(g, ctx, s)
		}).WithContext(ctx).Should(Succeed())
		Expect(countRows(ctx, s, "SELECT count(*) FROM tenancy.projects")).To(Equal(100))
	}, SpecTimeout(5*time.Minute))
})

// leaseHolder is who holds the manager's leader-election Lease ("" when nobody does).
func leaseHolder(ctx context.Context, s *stack) string {
	GinkgoHelper()
	var lease coordinationv1.Lease
	err := s.kube.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: "manager.tenancy.dev"}, &lease)
	if err != nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// eventuallyLeaseHolder waits until someone other than previous holds the Lease, and returns who.
func eventuallyLeaseHolder(ctx context.Context, s *stack, previous string) string {
	GinkgoHelper()
	var holder string
	Eventually(func(g Gomega) {
		holder = leaseHolder(ctx, s)
		g.Expect(holder).NotTo(BeEmpty())
		g.Expect(holder).NotTo(Equal(previous))
	}).WithContext(ctx).Should(Succeed())
	return holder
}
