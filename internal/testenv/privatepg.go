package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// PrivatePostgres is a PostgreSQL cluster of one test's own: initdb in a temporary directory,
// its own port on loopback, trust authentication. A test may stop and start it; the shared test
// server never stops.
type PrivatePostgres struct {
	dir  string
	bin  string
	port int
	// runAs prefixes the server's commands: PostgreSQL refuses to run as root, so root runs them
	// as the postgres OS user.
	runAs []string
}

// NewPrivatePostgres creates a cluster in a new temporary directory, starts it, and creates the
// database named database. The server's binaries are looked up in $TENANCY_PG_BINDIR, then in the
// newest /usr/lib/postgresql/<version>/bin (Debian's layout), then in $PATH.
func NewPrivatePostgres(ctx context.Context, database string) (*PrivatePostgres, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tenancy-pg-")
	if err != nil {
		return nil, err
	}
	p := &PrivatePostgres{dir: dir, bin: bin, port: port}
	if os.Geteuid() == 0 {
		if err := p.handToPostgresUser(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := p.initialize(ctx); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err == nil {
		_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{database}.Sanitize())
		_ = conn.Close(ctx)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("creating database %s: %w", database, err), p.Remove(ctx))
	}
	return p, nil
}

func postgresBinDir() (string, error) {
	if dir := os.Getenv("TENANCY_PG_BINDIR"); dir != "" {
		return dir, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	if len(dirs) > 0 {
		return filepath.Dir(dirs[0]), nil
	}
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		return "", errors.New("no PostgreSQL server binaries (initdb): install PostgreSQL or set TENANCY_PG_BINDIR")
	}
	return filepath.Dir(initdb), nil
}

// versionOf reads the major version from /usr/lib/postgresql/<version>/bin/initdb.
func versionOf(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

// handToPostgresUser gives the directory to the postgres OS user and runs the server as it.
func (p *PrivatePostgres) handToPostgresUser() error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root, a private PostgreSQL needs the postgres OS user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(p.dir, uid, gid); err != nil {
		return err
	}
	p.runAs = []string{"runuser", "-u", "postgres", "--"}
	return nil
}

func (p *PrivatePostgres) dataDir() string { return filepath.Join(p.dir, "data") }

func (p *PrivatePostgres) initialize(ctx context.Context) error {
	if err := p.run(ctx, "initdb", "-D", p.dataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--no-sync", "--no-instructions"); err != nil {
		return err
	}
	// The socket goes into the cluster's own directory; durability is not what these tests are
	// about, speed is.
	settings := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"+
		"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n", p.port, p.dir)
	f, err := os.OpenFile(filepath.Join(p.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(settings)
	return errors.Join(err, f.Close())
}

// URL is a superuser URL of database on this cluster.
func (p *PrivatePostgres) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, database)
}

// Start starts the server and waits until it accepts connections.
func (p *PrivatePostgres) Start(ctx context.Context) error {
	return p.run(ctx, "pg_ctl", "start", "-D", p.dataDir(), "-w", "-t", "60", "-l", filepath.Join(p.dir, "server.log"))
}

// Stop stops the server the way an administrator or a failover would (fast shutdown: open
// sessions are ended), and waits until it is down.
func (p *PrivatePostgres) Stop(ctx context.Context) error {
	return p.run(ctx, "pg_ctl", "stop", "-D", p.dataDir(), "-w", "-t", "60", "-m", "fast")
}

// Remove stops the server if it runs and deletes the cluster.
func (p *PrivatePostgres) Remove(ctx context.Context) error {
	var err error
	if _, statErr := os.Stat(filepath.Join(p.dataDir(), "postmaster.pid")); statErr == nil {
		err = p.Stop(ctx)
	}
	return errors.Join(err, os.RemoveAll(p.dir))
}

// ServerLog is what the server has logged.
func (p *PrivatePostgres) ServerLog() string {
	data, _ := os.ReadFile(filepath.Join(p.dir, "server.log"))
	return string(data)
}

func (p *PrivatePostgres) run(ctx context.Context, name string, args ...string) error {
	argv := append(slices.Clone(p.runAs), append([]string{filepath.Join(p.bin, name)}, args...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
