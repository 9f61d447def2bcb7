package db_test

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

var _ = Describe("Migrations", func() {
	var migrations []db.Migration

	BeforeEach(func() {
		var err error
		migrations, err = db.Migrations()
		Expect(err).NotTo(HaveOccurred())
		Expect(migrations).NotTo(BeEmpty())
	})

	newPool := func(ctx context.Context, url string) *pgxpool.Pool {
		pool, err := pgxpool.New(ctx, url)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pool.Close)
		return pool
	}

	It("applies every migration once and nothing on a second run", func(ctx SpecContext) {
		database, err := testenv.NewDatabase(ctx, "migrate")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(database.Drop)
		pool := newPool(ctx, database.URL)

		Expect(db.Migrate(ctx, pool)).To(Equal(len(migrations)))
		Expect(db.Migrate(ctx, pool)).To(Equal(0))

		var versions []int
		rows, err := pool.Query(ctx, "SELECT version FROM tenancy.schema_migrations ORDER BY version")
		Expect(err).NotTo(HaveOccurred())
		for rows.Next() {
			var v int
			Expect(rows.Scan(&v)).To(Succeed())
			versions = append(versions, v)
		}
		Expect(rows.Err()).NotTo(HaveOccurred())
		Expect(versions).To(HaveLen(len(migrations)))
	})

	It("lets two managers race on one database: each migration applied exactly once", func(ctx SpecContext) {
		database, err := testenv.NewDatabase(ctx, "race")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(database.Drop)
		pools := []*pgxpool.Pool{newPool(ctx, database.URL), newPool(ctx, database.URL), newPool(ctx, database.URL)}

		applied := make([]int, len(pools))
		errs := make([]error, len(pools))
		var wg sync.WaitGroup
		for i, pool := range pools {
			wg.Go(func() { applied[i], errs[i] = db.Migrate(ctx, pool) })
		}
		wg.Wait()
		for _, err := range errs {
			Expect(err).NotTo(HaveOccurred())
		}
		total := 0
		for _, n := range applied {
			total += n
		}
		Expect(total).To(Equal(len(migrations)), "applied per manager: %v", applied)

		var contextKeys int
		Expect(pools[0].QueryRow(ctx, "SELECT count(*) FROM tenancy.context_keys").Scan(&contextKeys)).To(Succeed())
		Expect(contextKeys).To(Equal(1), "the seed context key was inserted twice")
	})

	It("lets two databases create the server-wide roles at the same time", func(ctx SpecContext) {
		a, err := testenv.NewDatabase(ctx, "roles_a")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(a.Drop)
		b, err := testenv.NewDatabase(ctx, "roles_b")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(b.Drop)
		pools := []*pgxpool.Pool{newPool(ctx, a.URL), newPool(ctx, b.URL)}

		errs := make([]error, len(pools))
		var wg sync.WaitGroup
		for i, pool := range pools {
			wg.Go(func() { _, errs[i] = db.Migrate(ctx, pool) })
		}
		wg.Wait()
		Expect(errs).To(HaveEach(Not(HaveOccurred())))
	})

	It("works with pgcrypto and citext already installed in another schema", func(ctx SpecContext) {
		database, err := testenv.NewDatabase(ctx, "extensions")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(database.Drop)
		pool := newPool(ctx, database.URL)
		_, err = pool.Exec(ctx, `CREATE SCHEMA extensions;
		                         CREATE EXTENSION pgcrypto WITH SCHEMA extensions;
		                         CREATE EXTENSION citext WITH SCHEMA extensions`)
		Expect(err).NotTo(HaveOccurred())
		Expect(db.Migrate(ctx, pool)).To(Equal(len(migrations)))

		var signed string
		Expect(pool.QueryRow(ctx, "SELECT tenancy.sign_context(gen_random_uuid(), NULL, NULL, NULL, interval '1 minute')").
			Scan(&signed)).To(Succeed(), "the HMAC resolves to extensions.hmac")
		Expect(signed).To(HavePrefix("v1."))
	})

	It("refuses to run when an applied migration was edited afterwards", func(ctx SpecContext) {
		_, pg := newMigratedDatabase(ctx, "checksum")
		_, err := pg.Pool().Exec(ctx, "UPDATE tenancy.schema_migrations SET checksum = 'edited' WHERE version = 1")
		Expect(err).NotTo(HaveOccurred())
		_, err = db.Migrate(ctx, pg.Pool())
		Expect(err).To(MatchError(ContainSubstring("was changed after it was applied")))
	})
})
