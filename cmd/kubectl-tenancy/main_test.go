package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"
)

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

var home = env(map[string]string{"HOME": "/home/dev"})

func TestFlagErrors(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := []string{"--issuer=https://auth.example.com", "--client-id=kubectl.tenancy-system"}
	for _, tc := range []struct {
		name string
		args []string
		env  func(string) string
		err  string
	}{
		{"no command", nil, home, "a command is required"},
		{"unknown command", []string{"get-tokens"}, home, `unknown command "get-tokens"`},
		{"no issuer", []string{"get-token", "--client-id=kubectl"}, home, "--issuer: required"},
		{"issuer not a URL", []string{"login", "--issuer=auth.example.com", "--client-id=kubectl"}, home, `--issuer: "auth.example.com" is not an https URL`},
		{"plain http issuer", []string{"login", "--issuer=http://auth.example.com", "--client-id=kubectl"}, home, "--issuer: \"http://auth.example.com\" is not an https URL (http only on localhost)"},
		{"no client", []string{"logout", "--issuer=https://auth.example.com"}, home, "--client-id: required"},
		{"unknown flag", append([]string{"get-token", "--client"}, good...), home, "flag provided but not defined: -client"},
		{"positional argument", append([]string{"get-token", "acme"}, good...), home, `unexpected argument "acme"`},
		{"name outside kubeconfig", append([]string{"get-token", "--name=x"}, good...), home, "flag provided but not defined: -name"},
		{"missing CA file", append([]string{"get-token", "--certificate-authority=/nonexistent/ca.pem"}, good...), home,
			"--certificate-authority: open /nonexistent/ca.pem: no such file or directory"},
		{"CA file without PEM", append([]string{"get-token", "--certificate-authority=" + notPEM}, good...), home,
			"--certificate-authority: " + notPEM + " holds no PEM certificate"},
		{"no cache dir", append([]string{"get-token"}, good...), env(nil), "--cache-dir: required, since neither $XDG_CACHE_HOME nor $HOME is set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseArgs(tc.args, tc.env, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, cacheDir string
		env            func(string) string
		noBrowser      bool
	}{
		{"XDG cache home", "/xdg/kubectl-tenancy", env(map[string]string{"XDG_CACHE_HOME": "/xdg", "HOME": "/home/dev"}), false},
		{"home", "/home/dev/.cache/kubectl-tenancy", home, false},
		{"relative XDG is ignored", "/home/dev/.cache/kubectl-tenancy", env(map[string]string{"XDG_CACHE_HOME": "rel", "HOME": "/home/dev"}), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"get-token", "--issuer=https://auth.example.com/", "--client-id=kubectl.tenancy-system"}
			if tc.noBrowser {
				args = append(args, "--no-browser")
			}
			c, err := parseArgs(args, tc.env, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if c.options.CacheDir != tc.cacheDir || c.options.Issuer != "https://auth.example.com" || (c.options.OpenBrowser == nil) != tc.noBrowser {
				t.Errorf("cache dir %q, issuer %q, browser %v", c.options.CacheDir, c.options.Issuer, c.options.OpenBrowser != nil)
			}
		})
	}
}

func TestKubeconfigBakesTheFlags(t *testing.T) {
	srv := httptest.NewTLSServer(nil)
	srv.Close()
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"kubeconfig", "--issuer=https://auth.example.com", "--client-id=kubectl.tenancy-system",
		"--organization=acme", "--certificate-authority=ca.pem", "--name=acme-owner", "--no-browser"}, home, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var config clientcmdv1.Config
	if err := yaml.UnmarshalStrict(stdout.Bytes(), &config); err != nil {
		t.Fatalf("%v in:\n%s", err, stdout.String())
	}
	if len(config.AuthInfos) != 1 || config.AuthInfos[0].Name != "acme-owner" || config.AuthInfos[0].AuthInfo.Exec == nil {
		t.Fatalf("users %+v, want acme-owner with exec", config.AuthInfos)
	}
	want := []string{"get-token", "--certificate-authority=" + filepath.Join(dir, "ca.pem"), "--client-id=kubectl.tenancy-system",
		"--issuer=https://auth.example.com", "--no-browser=true", "--organization=acme"}
	if diff := cmp.Diff(want, config.AuthInfos[0].AuthInfo.Exec.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, 0, "kubectl-tenancy ", ""},
		{[]string{"--help"}, 0, "", "put this binary, named kubectl-tenancy, on your PATH"},
		{[]string{"login", "--help"}, 0, "", "-organization"},
		{[]string{"login"}, 2, "", "kubectl-tenancy: --issuer: required"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, home, &stdout, &stderr)
			if code != tc.code || !strings.HasPrefix(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q…, …%q…", code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}
