package faults_test

import (
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("The API server restarted", func() {
	It("leaves the manager running, which reconnects and converges on what changes afterwards", func(ctx SpecContext) {
		s := newStack(ctx, newDatabase(ctx))
		m := s.startManager("manager", managerOptions{resyncPeriod: time.Hour})
		s.waitForWebhooks(ctx)
		Expect(applyAll(ctx, s.kube, []client.Object{organization("before")})).To(Succeed())
		Expect(applyAll(ctx, s.kube, tenantObjects("before", 2))).To(Succeed())
		Eventually(func(g Gomega) { expectAllReady(g, ctx, s.kube) }).WithContext(ctx).Should(Succeed())

		By("stopping kube-apiserver (etcd keeps running) while the manager runs")
		apiServer := s.env.ControlPlane.GetAPIServer()
		if err := apiServer.Stop(); err != nil {
			// Killed after StopTimeout, which is as good a stop for this test.
			Expect(err).To(MatchError(ContainSubstring("timeout waiting for process kube-apiserver to stop")))
		}
		Consistently(func() bool {
			exited, _ := m.Exited()
			return exited
		}).WithContext(ctx).WithTimeout(5*time.Second).Should(BeFalse(), "the manager must wait for the API server, not exit")

		By("starting it again on the same port, with the same certificates and etcd")
		Eventually(func() error {
			l, err := net.Listen("tcp", apiServer.SecureServing.HostPort())
			if err == nil {
				err = l.Close()
			}
			return err
		}).WithContext(ctx).Should(Succeed(), "the stopped API server's port must be free")
		Expect(apiServer.Start()).To(Succeed())

		By("creating and changing objects after the restart")
		Expect(applyAll(ctx, s.kube, []client.Object{organization("after")})).To(Succeed())
		Expect(applyAll(ctx, s.kube, tenantObjects("after", 3))).To(Succeed())
		before := &tenancyv1.Organization{}
		Expect(s.kube.Get(ctx, client.ObjectKey{Name: "before"}, before)).To(Succeed())
		Expect(s.kube.Patch(ctx, before, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"displayName":"Changed after the restart"}}`)))).To(Succeed())
		Expect(deleteAll(ctx, s.kube, []client.Object{project("before", "p1")})).To(Succeed())

		Eventually(func(g Gomega) {
			expectAllReady(g, ctx, s.kube)
			expectRowsMatch(g, ctx, s)
		}).WithContext(ctx).Should(Succeed())
		Expect(testenv.ReadOrganization(ctx, s.sql, "o.name = 'before'")).To(HaveField("DisplayName", "Changed after the restart"))
		Expect(countRows(ctx, s, "SELECT count(*) FROM tenancy.projects")).To(Equal(1 + 3))
		exited, err := m.Exited()
		Expect(exited).To(BeFalse(), "the manager exited: %v", err)
	}, SpecTimeout(4*time.Minute))
})
