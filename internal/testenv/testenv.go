package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

// TB is what the helpers use of a test: *testing.T, or GinkgoT() in a Ginkgo suite.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
	TempDir() string
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// ServerURL is the superuser URL of the test PostgreSQL server: $TENANCY_TEST_DATABASE_URL, or
// what hack/postgres.sh finds or starts. It fails under -short (see SkipIfShort).
func ServerURL() (string, error) {
	if err := refuseUnderShort("PostgreSQL is needed"); err != nil {
		return "", err
	}
	if u := os.Getenv("TENANCY_TEST_DATABASE_URL"); u != "" {
		return u, nil
	}
	out, err := exec.Command(filepath.Join(RepoRoot(), "hack", "postgres.sh")).Output()
	if err != nil {
		return "", fmt.Errorf("hack/postgres.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Database is a throwaway database on the test server.
type Database struct {
	// URL connects to the database as the server's superuser.
	URL       string
	name      string
	serverURL string
}

// NewDatabase creates a database named after prefix with a random suffix.
func NewDatabase(ctx context.Context, prefix string) (*Database, error) {
	serverURL, err := ServerURL()
	if err != nil {
		return nil, err
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := fmt.Sprintf("tenancy_test_%s_%s", prefix, hex.EncodeToString(suffix))
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to the test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("parsing the test server URL: %w", err)
	}
	u.Path = "/" + name
	return &Database{URL: u.String(), name: name, serverURL: serverURL}, nil
}

// NewMigratedDatabase is NewDatabase with the schema migrated as the manager migrates it, and a
// pool to it; both go when t ends.
func NewMigratedDatabase(t TB, prefix string) (*Database, *db.Postgres) {
	t.Helper()
	ctx := context.Background()
	database, err := NewDatabase(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = database.Drop(context.Background()) })
	pg, err := db.Connect(ctx, database.URL, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return database, pg
}

// Proxied returns a Proxy to the database's server and the database's URL through it, so that a
// test can cut the connection without stopping the server that other tests share.
func (d *Database) Proxied() (*Proxy, string, error) {
	u, err := url.Parse(d.URL)
	if err != nil {
		return nil, "", err
	}
	proxy, err := NewProxy(u.Host)
	if err != nil {
		return nil, "", err
	}
	u.Host = proxy.Addr()
	return proxy, u.String(), nil
}

// Scheme knows Kubernetes' built-in kinds and the tenancy kinds.
func Scheme() *k8sruntime.Scheme {
	scheme := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(tenancyv1.AddToScheme(scheme))
	return scheme
}

// Drop removes the database, disconnecting whoever still uses it.
func (d *Database) Drop(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.serverURL)
	if err != nil {
		return fmt.Errorf("connecting to the test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", d.name, err)
	}
	return nil
}

// BinaryAssets is the directory of kube-apiserver, etcd and kubectl: $KUBEBUILDER_ASSETS, or what
// hack/setup-envtest.sh builds (once) and caches. It fails under -short (see SkipIfShort).
func BinaryAssets() (string, error) {
	if err := refuseUnderShort("envtest's binaries are needed"); err != nil {
		return "", err
	}
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "setup-envtest.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/setup-envtest.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// NewControlPlane describes an envtest control plane with the tenancy CRDs installed.
func NewControlPlane() (*envtest.Environment, error) {
	assets, err := BinaryAssets()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}, nil
}
