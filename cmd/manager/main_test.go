package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenancy-dev/tenancy/internal/version"
)

func TestParseFlags(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c config)
	}{
		{
			name: "database URL from the environment, documented defaults",
			env:  map[string]string{"TENANCY_DATABASE_URL": "postgres://db/tenancy"},
			check: func(t *testing.T, c config) {
				if c.databaseURL != "postgres://db/tenancy" || c.resyncPeriod != 10*time.Minute ||
					c.namespace != "tenancy-system" || c.metricsAddr != ":8080" || c.probeAddr != ":8081" || c.leaderElect {
					t.Fatalf("unexpected defaults: %+v", c)
				}
			},
		},
		{
			name: "the flag wins over the environment",
			args: []string{"--database-url=postgres://flag/db", "--resync-period=30s", "--leader-elect"},
			env:  map[string]string{"TENANCY_DATABASE_URL": "postgres://env/db"},
			check: func(t *testing.T, c config) {
				if c.databaseURL != "postgres://flag/db" || c.resyncPeriod != 30*time.Second || !c.leaderElect {
					t.Fatalf("flags not applied: %+v", c)
				}
			},
		},
		{
			name: "webhooks on by default, platform admins from comma-separated lists",
			args: []string{"--database-url=x", "--platform-admin-users= ops@example.com, ,ci-bot ", "--webhook-port=10443"},
			check: func(t *testing.T, c config) {
				if !c.enableWebhooks || c.webhookPort != 10443 || c.webhookSelfSigned ||
					!slices.Equal(c.platformAdminGroups, []string{"system:masters"}) ||
					!slices.Equal(c.platformAdminUsers, []string{"ops@example.com", "ci-bot"}) {
					t.Fatalf("unexpected webhook settings: %+v", c)
				}
			},
		},
		{name: "webhook port out of range", args: []string{"--database-url=x", "--webhook-port=70000"}, wantErr: "--webhook-port"},
		{name: "no database", wantErr: "--database-url: required"},
		{name: "resync too short", args: []string{"--database-url=x", "--resync-period=10ms"}, wantErr: "--resync-period"},
		{name: "no workers", args: []string{"--database-url=x", "--max-concurrent-reconciles=0"}, wantErr: "--max-concurrent-reconciles"},
		{name: "unknown flag", args: []string{"--database-url=x", "--bogus"}, wantErr: "bogus"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseFlags() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags() error = %v", err)
			}
			tc.check(t, c)
		})
	}
}

// TestVersionNeedsNoOtherFlag: --version answers before the flags that running needs are checked.
func TestVersionNeedsNoOtherFlag(t *testing.T) {
	if _, err := parseFlags([]string{"--version"}, func(string) string { return "" }); !errors.Is(err, version.ErrRequested) {
		t.Fatalf("parseFlags(--version) = %v, want version.ErrRequested", err)
	}
}
