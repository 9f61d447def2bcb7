package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// TestWriteAuthenticationConfig: kube-apiserver gets authd's issuer, the dev CA and the kubectl
// client's audience, and maps a verified address to the bare email, the name the Memberships'
// RoleBindings use (the manager runs without --username-prefix).
func TestWriteAuthenticationConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authentication-config.yaml")
	caPEM := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	if err := writeAuthenticationConfig(path, "https://localhost:8090", caPEM); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal(readFile(t, path), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AuthenticationConfiguration",
		"jwt": []any{map[string]any{
			"issuer": map[string]any{
				"url": "https://localhost:8090", "certificateAuthority": string(caPEM), "audiences": []any{"kubectl.tenancy-system"},
			},
			"claimValidationRules": []any{map[string]any{
				"expression": "claims.email_verified == true", "message": "the email address must be verified",
			}},
			"claimMappings": map[string]any{
				"username": map[string]any{"claim": "email", "prefix": ""},
				"groups":   map[string]any{"expression": `["tenancy:users"]`},
				"uid":      map[string]any{"claim": "sub"},
			},
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("the authentication configuration (-want +got):\n%s", diff)
	}
}

// TestWriteOIDCKubeconfig: the OIDC kubeconfig reaches the admin kubeconfig's API server with its
// CA, as the person whose token the kubectl-tenancy plugin gets from authd.
func TestWriteOIDCKubeconfig(t *testing.T) {
	admin := clientcmdapi.NewConfig()
	admin.Clusters["envtest"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: []byte("apiserver CA")}
	admin.AuthInfos["dev-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte("admin's certificate")}
	admin.Contexts["default"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "dev-admin"}
	admin.CurrentContext = "default"
	adminBytes, err := clientcmd.Write(*admin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig-oidc")
	if err := writeOIDCKubeconfig(path, adminBytes, "https://localhost:8090", "/work/.dev/ca.crt"); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm()&0o077 != 0 {
		t.Fatalf("kubeconfig-oidc: %v; want it readable by its owner only", err)
	}
	config, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := clientcmd.NewDefaultClientConfig(*config, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if rest.Host != "https://127.0.0.1:6443" || string(rest.CAData) != "apiserver CA" || rest.CertData != nil {
		t.Fatalf("cluster %s, CA %q, client certificate %q: want the admin's server and CA, and no admin credentials", rest.Host, rest.CAData, rest.CertData)
	}
	if rest.ExecProvider == nil {
		t.Fatal("the user has no exec plugin")
	}
	wantArgs := []string{"get-token", "--issuer=https://localhost:8090", "--client-id=kubectl.tenancy-system", "--certificate-authority=/work/.dev/ca.crt"}
	if rest.ExecProvider.Command != "kubectl-tenancy" || !cmp.Equal(rest.ExecProvider.Args, wantArgs) ||
		rest.ExecProvider.APIVersion != "client.authentication.k8s.io/v1" {
		t.Fatalf("the exec plugin: %s %v (%s); want kubectl-tenancy %v", rest.ExecProvider.Command, rest.ExecProvider.Args, rest.ExecProvider.APIVersion, wantArgs)
	}
}
