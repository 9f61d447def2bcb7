package db_test

import (
	"net/http/httptest"
	"net/url"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("Readiness", func() {
	It("is not ready before migrating; ReadyCheck is not ready while the database is unreachable either", func(ctx SpecContext) {
		database, err := testenv.NewDatabase(ctx, "ready")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(database.Drop)
		u, err := url.Parse(database.URL)
		Expect(err).NotTo(HaveOccurred())
		proxy, err := testenv.NewProxy(u.Host)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(proxy.Close)
		u.Host = proxy.Addr()

		pg, err := db.Connect(ctx, u.String(), GinkgoLogr)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pg.Close)
		req := httptest.NewRequest("GET", "/readyz", nil).WithContext(ctx)

		Expect(pg.ReadyCheck(req)).To(MatchError(db.ErrNotMigrated))
		Expect(pg.MigratedCheck(req)).To(MatchError(db.ErrNotMigrated))
		Expect(pg.Start(ctx)).To(Succeed())
		Expect(pg.ReadyCheck(req)).To(Succeed())
		Expect(pg.MigratedCheck(req)).To(Succeed())

		proxy.Cut()
		Expect(pg.ReadyCheck(req)).To(MatchError(ContainSubstring("database unreachable")))
		Expect(pg.MigratedCheck(req)).To(Succeed(), "the manager stays ready for its webhooks")
		proxy.Restore()
		Eventually(func() error { return pg.ReadyCheck(req) }).WithContext(ctx).Should(Succeed())
	})
})
