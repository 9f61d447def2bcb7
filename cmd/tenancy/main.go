// tenancy is Tenancy's command line for platform teams. `tenancy import` brings a hand-built
// multi-tenant schema (organizations, projects, users with bcrypt hashes, memberships, API keys,
// an audit log) into Tenancy: rows into Tenancy's database, manifests for GitOps, and with
// --apply the objects into the cluster. The logic is in internal/importer; docs/migration.md
// walks a team through it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tenancy-dev/tenancy/internal/importer"
	"github.com/tenancy-dev/tenancy/internal/version"
)

const usage = `tenancy is Tenancy's command line for platform teams.

Usage:
  tenancy import [flags]    Import an existing multi-tenant schema (docs/migration.md).
  tenancy version           Print the version.

Exit status: 0 when everything was imported, 2 when some rows were reported as problems (the rest
was imported), 1 on an error.
`

// exitProblems is the exit status of an import that reported rows it could not take.
const exitProblems = 2

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		say(stderr, usage)
		return 1
	}
	switch args[0] {
	case "import":
		return runImport(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		sayln(stdout, version.Get())
		return 0
	case "help", "--help", "-h", "-help":
		say(stdout, usage)
		return 0
	default:
		sayf(stderr, "tenancy: unknown command %q: use import or version (see tenancy --help)\n", args[0])
		return 1
	}
}

// importFlags are the flags of tenancy import.
type importFlags struct {
	sourceURL, databaseURL, mapping, out, kubeconfig, operatorNamespace, oldKeysUntil string
	apply, dryRun, printMapping, noCluster                                            bool
	adoptNamespaces                                                                   stringList
	wait                                                                              time.Duration
}

func parseImportFlags(args []string, stderr io.Writer) (importFlags, error) {
	var f importFlags
	fs := flag.NewFlagSet("tenancy import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.sourceURL, "source-url", os.Getenv("TENANCY_IMPORT_SOURCE_URL"), "the old system's PostgreSQL URL (or TENANCY_IMPORT_SOURCE_URL)")
	fs.StringVar(&f.databaseURL, "database-url", os.Getenv("TENANCY_DATABASE_URL"), "Tenancy's PostgreSQL URL, migrated by the manager (or TENANCY_DATABASE_URL); may be the same database")
	fs.StringVar(&f.mapping, "mapping", "", "a YAML file naming the old tables and columns (default: the shape --print-mapping shows)")
	fs.StringVar(&f.out, "out", "", "write the manifests into this directory: one directory per organization, files in apply order")
	fs.BoolVar(&f.apply, "apply", false, "apply the manifests to the cluster (server-side apply, as a platform admin) and wait until they are Ready")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "the kubeconfig for --apply (default: KUBECONFIG or ~/.kube/config)")
	fs.DurationVar(&f.wait, "wait", 5*time.Minute, "with --apply, how long to wait for the objects to be Ready")
	fs.BoolVar(&f.dryRun, "dry-run", false, "read the source and print what the import would do; write nothing")
	fs.StringVar(&f.oldKeysUntil, "old-keys-until", "", "when the old API keys stop working: a date (2027-03-31) or RFC 3339 time; default 90 days from now")
	fs.Var(&f.adoptNamespaces, "adopt-namespace", "an existing namespace that the organization of its name may adopt (repeat, or separate with commas); the import adopts none otherwise")
	fs.BoolVar(&f.noCluster, "no-cluster", false, "do not read the cluster: no check for Organizations and namespaces of the same names, and the old API keys wait (not with --apply)")
	fs.StringVar(&f.operatorNamespace, "operator-namespace", "tenancy-system", "the operator's namespace, which no organization may take")
	fs.BoolVar(&f.printMapping, "print-mapping", false, "print the default mapping (a starting point for --mapping) and exit")
	fs.Usage = func() {
		sayf(stderr, "Usage: tenancy import --source-url URL [--mapping FILE] (--out DIR | --apply | --dry-run) [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return f, nil
}

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f, err := parseImportFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		sayf(stderr, "tenancy import: %v\n", err)
		return 1
	}
	if f.printMapping {
		out, err := yaml.Marshal(importer.DefaultMapping())
		if err != nil {
			sayf(stderr, "tenancy import: %v\n", err)
			return 1
		}
		_, _ = stdout.Write(out)
		return 0
	}
	cfg, err := importConfig(f, stdout, stderr)
	if err != nil {
		sayf(stderr, "tenancy import: %v\n", err)
		return 1
	}
	result, err := importer.Run(ctx, cfg)
	if err != nil {
		sayf(stderr, "tenancy import: %v\n", err)
		return 1
	}
	if len(result.Problems) > 0 {
		return exitProblems
	}
	return 0
}

func importConfig(f importFlags, stdout, stderr io.Writer) (importer.Config, error) {
	switch {
	case f.sourceURL == "":
		return importer.Config{}, errors.New("--source-url: required (the old system's database)")
	case f.databaseURL == "" && !f.dryRun:
		return importer.Config{}, errors.New("--database-url: required (Tenancy's database), or TENANCY_DATABASE_URL")
	case f.out == "" && !f.apply && !f.dryRun:
		return importer.Config{}, errors.New("--out or --apply: the organizations must go somewhere (or use --dry-run)")
	case f.wait <= 0:
		return importer.Config{}, fmt.Errorf("--wait: must be positive, got %s", f.wait)
	case f.apply && f.noCluster:
		return importer.Config{}, errors.New("--apply and --no-cluster: applying needs the cluster")
	}
	mapping, err := importer.LoadMapping(f.mapping)
	if err != nil {
		return importer.Config{}, err
	}
	until := time.Now().AddDate(0, 0, 90)
	if f.oldKeysUntil != "" {
		if until, err = parseTime(f.oldKeysUntil); err != nil {
			return importer.Config{}, fmt.Errorf("--old-keys-until: %w", err)
		}
		if !until.After(time.Now()) {
			return importer.Config{}, fmt.Errorf("--old-keys-until: %s is past: the old keys would stop working at once", f.oldKeysUntil)
		}
		if until.After(time.Now().AddDate(1, 0, 0)) {
			return importer.Config{}, fmt.Errorf("--old-keys-until: %s is more than a year ahead; API keys expire within a year", f.oldKeysUntil)
		}
	}
	cfg := importer.Config{
		Mapping: mapping, SourceURL: f.sourceURL, DatabaseURL: f.databaseURL, OutDir: f.out, Wait: f.wait,
		DryRun: f.dryRun, OldKeysUntil: until, OperatorNamespace: f.operatorNamespace, Actor: actor(),
		Progress: stderr, Report: stdout, Apply: f.apply && !f.dryRun, AdoptNamespaces: f.adoptNamespaces,
	}
	if file, ok := stderr.(*os.File); ok {
		cfg.Terminal = term.IsTerminal(int(file.Fd()))
	}
	if !f.noCluster {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = f.kubeconfig
		restConfig, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return importer.Config{}, fmt.Errorf("reading the kubeconfig: %w (the import checks the cluster for namespaces and Organizations it must not take over; --no-cluster skips that knowingly)", err)
		}
		// Hundreds of objects: client-go's default of 5 requests per second would take minutes.
		restConfig.QPS, restConfig.Burst = 50, 100
		if cfg.Kube, err = client.New(restConfig, client.Options{}); err != nil {
			return importer.Config{}, fmt.Errorf("connecting to the cluster: %w (or --no-cluster)", err)
		}
	}
	return cfg, nil
}

// stringList is a flag that may be repeated, each value a comma-separated list.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(value string) error {
	for _, v := range strings.Split(value, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// parseTime takes a date (midnight UTC) or an RFC 3339 time.
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a date (2027-03-31) nor an RFC 3339 time", s)
	}
	return t, nil
}

// actor names the import in the audit log: the command and who ran it.
func actor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "tenancy-import (" + u.Username + ")"
	}
	return "tenancy-import"
}

func say(w io.Writer, a ...any)                 { _, _ = fmt.Fprint(w, a...) }
func sayln(w io.Writer, a ...any)               { _, _ = fmt.Fprintln(w, a...) }
func sayf(w io.Writer, format string, a ...any) { _, _ = fmt.Fprintf(w, format, a...) }
