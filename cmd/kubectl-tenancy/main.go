// kubectl-tenancy signs a person in to kubectl with their Tenancy identity: a kubectl plugin
// (`kubectl tenancy …`) and the exec credential plugin that the kubeconfig runs. The logic is in
// internal/kubelogin.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/tenancy-dev/tenancy/internal/kubelogin"
	"github.com/tenancy-dev/tenancy/internal/loopback"
	"github.com/tenancy-dev/tenancy/internal/version"
)

const usage = `kubectl-tenancy signs you in to Kubernetes with your Tenancy identity: it gets an ID token from
authd (in the browser, with the authorization code flow) and hands it to kubectl.

Usage:
  kubectl-tenancy <command> [flags]
  kubectl tenancy <command> [flags]     (as a kubectl plugin)

Commands:
  get-token   Print an ExecCredential with your ID token, signing in when needed; the kubeconfig runs this.
  login       Sign in in the browser and print who you are and in which organization.
  logout      Forget the cached tokens and end the session at the issuer.
  kubeconfig  Print a kubeconfig user that runs get-token with the same flags.
  version     Print the version.

Install as a kubectl plugin: put this binary, named kubectl-tenancy, on your PATH
(go install github.com/tenancy-dev/tenancy/cmd/kubectl-tenancy@latest); kubectl then runs it as
"kubectl tenancy". Then add the user that "kubectl-tenancy kubeconfig" prints to your kubeconfig.
`

// commands are the subcommands that sign in or use the cache, and take the flags below.
var commands = []string{"get-token", "login", "logout", "kubeconfig"}

type config struct {
	command string
	options kubelogin.Options
	// args are the flags given, for the kubeconfig's get-token; userName the kubeconfig user.
	args     []string
	userName string
}

// parseArgs reads the command line; out receives --help and the flag package's messages.
func parseArgs(args []string, getenv func(string) string, out io.Writer) (config, error) {
	if len(args) == 0 {
		say(out, usage)
		return config{}, errors.New("a command is required: get-token, login, logout, kubeconfig or version")
	}
	c := config{command: args[0]}
	switch c.command {
	case "version", "--version", "-version":
		return config{}, version.ErrRequested
	case "help", "--help", "-help", "-h":
		say(out, usage)
		return config{}, flag.ErrHelp
	}
	known := false
	for _, name := range commands {
		known = known || name == c.command
	}
	if !known {
		return config{}, fmt.Errorf("unknown command %q: use get-token, login, logout, kubeconfig or version (see --help)", c.command)
	}

	fs := flag.NewFlagSet("kubectl-tenancy "+c.command, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		say(out, usage)
		sayf(out, "\nFlags of %s:\n", c.command)
		fs.PrintDefaults()
	}
	o := &c.options
	var caFile, cacheDir string
	var noBrowser bool
	fs.StringVar(&o.Issuer, "issuer", "", "authd's issuer URL, e.g. https://auth.example.com (required).")
	fs.StringVar(&o.ClientID, "client-id", "", "The OAuthClient kubectl signs in with, e.g. kubectl.tenancy-system (required).")
	fs.StringVar(&o.ClientSecret, "client-secret", "",
		"The client's secret, for a confidential client only; kubeconfig writes it into the kubeconfig. Leave it out for a public client.")
	fs.StringVar(&o.Organization, "organization", "", "Sign in to this organization (its name) instead of choosing one in the browser.")
	fs.StringVar(&o.LoginHint, "login-hint", "", "The email address the login page starts with.")
	fs.StringVar(&caFile, "certificate-authority", "", "A PEM file of CA certificates to trust for the issuer, besides the system roots.")
	fs.StringVar(&cacheDir, "cache-dir", "", "Where tokens are cached; defaults to $XDG_CACHE_HOME/kubectl-tenancy, else ~/.cache/kubectl-tenancy.")
	fs.BoolVar(&noBrowser, "no-browser", false, "Only print the sign-in URL; by default the browser is opened as well.")
	if c.command == "kubeconfig" {
		fs.StringVar(&c.userName, "name", "tenancy", "The kubeconfig user's name.")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q: %s takes flags only", fs.Arg(0), c.command)
	}

	o.Issuer = strings.TrimSuffix(o.Issuer, "/")
	u, err := url.Parse(o.Issuer)
	switch {
	case o.Issuer == "":
		return config{}, errors.New("--issuer: required (authd's issuer URL, e.g. https://auth.example.com)")
	case err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || (u.Scheme != "https" && (u.Scheme != "http" || !loopback.Host(u.Hostname()))):
		return config{}, fmt.Errorf("--issuer: %q is not an https URL (http only on localhost)", o.Issuer)
	case o.ClientID == "":
		return config{}, errors.New("--client-id: required (the OAuthClient kubectl signs in with, e.g. kubectl.tenancy-system)")
	}
	if caFile != "" {
		if caFile, err = filepath.Abs(caFile); err != nil {
			return config{}, fmt.Errorf("--certificate-authority: %w", err)
		}
	}
	if o.HTTPClient, err = httpClient(caFile); err != nil {
		return config{}, err
	}
	if cacheDir == "" {
		if cacheDir, err = defaultCacheDir(getenv); err != nil {
			return config{}, err
		}
	} else if cacheDir, err = filepath.Abs(cacheDir); err != nil {
		return config{}, fmt.Errorf("--cache-dir: %w", err)
	}
	o.CacheDir = cacheDir
	if !noBrowser {
		o.OpenBrowser = openBrowser
	}

	// The kubeconfig's get-token gets the flags given here, with paths made absolute (kubectl
	// runs it from anywhere).
	c.args = []string{"get-token"}
	fs.Visit(func(f *flag.Flag) {
		value := f.Value.String()
		switch f.Name {
		case "name":
			return
		case "certificate-authority":
			value = caFile
		case "cache-dir":
			value = cacheDir
		case "issuer":
			value = o.Issuer
		}
		c.args = append(c.args, "--"+f.Name+"="+value)
	})
	return c, nil
}

// say, sayln and sayf write to the terminal; there is nothing to do when that fails.
func say(w io.Writer, a ...any)                 { _, _ = fmt.Fprint(w, a...) }
func sayln(w io.Writer, a ...any)               { _, _ = fmt.Fprintln(w, a...) }
func sayf(w io.Writer, format string, a ...any) { _, _ = fmt.Fprintf(w, format, a...) }

// httpClient trusts the system roots and, when caFile is set, its certificates.
func httpClient(caFile string) (*http.Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--certificate-authority: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--certificate-authority: %s holds no PEM certificate", caFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}, nil
}

// defaultCacheDir is $XDG_CACHE_HOME/kubectl-tenancy, else ~/.cache/kubectl-tenancy.
func defaultCacheDir(getenv func(string) string) (string, error) {
	if dir := getenv("XDG_CACHE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "kubectl-tenancy"), nil
	}
	home := getenv("HOME")
	if home == "" {
		home = getenv("USERPROFILE")
	}
	if home == "" {
		return "", errors.New("--cache-dir: required, since neither $XDG_CACHE_HOME nor $HOME is set")
	}
	return filepath.Join(home, ".cache", "kubectl-tenancy"), nil
}

// openBrowser starts the desktop's opener on url and does not wait for it. The opener's output
// goes nowhere: get-token's stdout is the ExecCredential.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one command and answers the exit code: 2 for a wrong command line, 1 for a failure.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c, err := parseArgs(args, getenv, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, version.ErrRequested):
		sayln(stdout, "kubectl-tenancy", version.Get())
		return 0
	case err != nil:
		sayln(stderr, "kubectl-tenancy:", err)
		return 2
	}
	c.options.Prompt = stderr // client-go shows the plugin's stderr
	if err := execute(ctx, c, stdout, stderr); err != nil {
		sayf(stderr, "kubectl-tenancy %s: %v\n", c.command, err)
		return 1
	}
	return 0
}

func execute(ctx context.Context, c config, stdout, stderr io.Writer) error {
	o := c.options
	switch c.command {
	case "get-token":
		cred, err := kubelogin.Token(ctx, o)
		if err != nil {
			return err
		}
		warnUnverified(stderr, cred)
		out, err := kubelogin.ExecCredential(cred)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(out))
		return err
	case "login":
		cred, err := kubelogin.Login(ctx, o)
		if err != nil {
			return err
		}
		sayf(stdout, "Signed in to %s as %s, %s in organization %s, until %s.\n",
			o.Issuer, cred.Email, cred.Role, cred.Org, cred.Expiry.Local().Format(time.DateTime))
		warnUnverified(stderr, cred)
		return nil
	case "logout":
		if err := kubelogin.Logout(ctx, o); err != nil {
			return err
		}
		sayf(stdout, "Signed out of %s: the cached tokens are gone and the session there has ended.\n", o.Issuer)
		return nil
	case "kubeconfig":
		_, err := fmt.Fprint(stdout, kubelogin.KubeconfigUser(c.userName, c.args))
		return err
	}
	return fmt.Errorf("unknown command %q", c.command)
}

// warnUnverified explains the API server's refusal of an unverified email address ahead of time.
func warnUnverified(stderr io.Writer, cred kubelogin.Credential) {
	if cred.Email != "" && !cred.EmailVerified {
		sayf(stderr, "Warning: %s is not verified yet, so the API server refuses this ID token; "+
			"verify it from the link authd mails (or its account page), then run kubectl-tenancy login.\n", cred.Email)
	}
}
