package db_test

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/testenv"
)

func TestDB(t *testing.T) {
	testenv.SkipIfShort(t, "PostgreSQL")
	RegisterFailHandler(Fail)
	// A spec's context has no deadline: without this a failing Eventually would wait forever.
	EnforceDefaultTimeoutsWhenUsingContexts()
	RunSpecs(t, "Database")
}

// newMigratedDatabase gives a spec its own migrated database, dropped when the spec ends.
func newMigratedDatabase(ctx context.Context, prefix string) (*testenv.Database, *db.Postgres) {
	GinkgoHelper()
	database, err := testenv.NewDatabase(ctx, prefix)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(database.Drop)
	pg, err := db.Connect(ctx, database.URL, logr.Discard())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pg.Close)
	Expect(pg.Start(ctx)).To(Succeed())
	return database, pg
}

// countRows runs a SELECT count(*) query.
func countRows(ctx context.Context, pg *db.Postgres, sql string, args ...any) int {
	GinkgoHelper()
	var n int
	Expect(pg.Pool().QueryRow(ctx, sql, args...).Scan(&n)).To(Succeed())
	return n
}
