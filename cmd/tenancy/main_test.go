package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestImportFlags: bad flags are refused with the flag's name and the reason, before anything is
// read or written.
func TestImportFlags(t *testing.T) {
	t.Setenv("TENANCY_DATABASE_URL", "")
	t.Setenv("TENANCY_IMPORT_SOURCE_URL", "")
	nextYear := time.Now().AddDate(1, 1, 0).Format(time.DateOnly)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no source", []string{"--out", "x"}, "--source-url: required"},
		{"no Tenancy database", []string{"--source-url", "postgres://old", "--out", "x"}, "--database-url: required"},
		{"nowhere to go", []string{"--source-url", "postgres://old", "--database-url", "postgres://new"}, "--out or --apply"},
		{"a past date", []string{"--source-url", "postgres://old", "--dry-run", "--no-cluster", "--old-keys-until", "2020-01-01"}, "--old-keys-until: 2020-01-01 is past"},
		{"more than a year", []string{"--source-url", "postgres://old", "--dry-run", "--no-cluster", "--old-keys-until", nextYear}, "is more than a year ahead"},
		{"not a date", []string{"--source-url", "postgres://old", "--dry-run", "--no-cluster", "--old-keys-until", "soon"}, `"soon" is neither a date`},
		{"apply without a cluster", []string{"--source-url", "postgres://old", "--database-url", "postgres://new", "--apply", "--no-cluster"}, "--apply and --no-cluster"},
		{"an argument", []string{"--source-url", "postgres://old", "--dry-run", "extra"}, `unexpected argument "extra"`},
		{"a wait of nothing", []string{"--source-url", "postgres://old", "--dry-run", "--wait", "0s"}, "--wait: must be positive"},
		{"no kubeconfig, and no --no-cluster", []string{"--source-url", "postgres://old", "--dry-run", "--kubeconfig", "/nonexistent"}, "--no-cluster skips that knowingly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"import"}, tc.args...), &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

func TestAdoptNamespaceFlag(t *testing.T) {
	var l stringList
	for _, v := range []string{"monitoring", "a, b", ""} {
		if err := l.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.String(); got != "monitoring,a,b" {
		t.Fatalf("--adopt-namespace monitoring --adopt-namespace 'a, b' = %q", got)
	}
}

func TestPrintMapping(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"import", "--print-mapping"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"source: legacy", "schema: public", "passwordHash: password_hash", "hashEncoding: hex"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the default mapping lacks %q:\n%s", want, stdout.String())
		}
	}
}
