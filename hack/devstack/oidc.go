package main

import (
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// kubectl as an authd identity: kube-apiserver trusts authd's ID tokens for the OAuthClient
// kubectl (kubectl-oauthclient.yaml), and kubeconfig-oidc gets them through the kubectl-tenancy plugin.
const (
	// kubectlClientID is the client_id of the OAuthClient kubectl in the operator's namespace,
	// and the audience kube-apiserver accepts.
	kubectlClientID = "kubectl." + operatorNamespace
	// oidcGroup is the group kube-apiserver gives every authd identity.
	oidcGroup = "tenancy:users"
)

// writeAuthenticationConfig writes kube-apiserver's structured authentication configuration
// (--authentication-config): ID tokens of issuer for kubectlClientID, from a person whose
// address is verified, are the user named by the address. The manager runs without
// --username-prefix, so the address alone is the name the Memberships' RoleBindings use.
// kube-apiserver fetches the issuer's discovery document in the background, retrying, so authd
// may start after it.
func writeAuthenticationConfig(path, issuer string, caPEM []byte) error {
	config := map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AuthenticationConfiguration",
		"jwt": []any{map[string]any{
			"issuer": map[string]any{
				"url":                  issuer, // byte for byte authd's --issuer and its discovery's "issuer"
				"certificateAuthority": string(caPEM),
				"audiences":            []string{kubectlClientID},
			},
			"claimValidationRules": []any{map[string]any{
				"expression": "claims.email_verified == true",
				"message":    "the email address must be verified",
			}},
			"claimMappings": map[string]any{
				"username": map[string]any{"claim": "email", "prefix": ""},
				"groups":   map[string]any{"expression": fmt.Sprintf("[%q]", oidcGroup)},
				"uid":      map[string]any{"claim": "sub"},
			},
		}},
	}
	data, err := yaml.Marshal(config)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// writeOIDCKubeconfig writes a kubeconfig for the cluster of adminKubeconfig whose user is the
// person signed in to authd: the kubectl-tenancy plugin gets their ID token, through the browser
// the first time.
func writeOIDCKubeconfig(path string, adminKubeconfig []byte, issuer, caFile string) error {
	admin, err := clientcmd.Load(adminKubeconfig)
	if err != nil {
		return err
	}
	adminContext, ok := admin.Contexts[admin.CurrentContext]
	if !ok || admin.Clusters[adminContext.Cluster] == nil {
		return fmt.Errorf("the admin kubeconfig has no cluster for its context %q", admin.CurrentContext)
	}
	const name = "tenancy-dev"
	config := clientcmdapi.NewConfig()
	config.Clusters[name] = admin.Clusters[adminContext.Cluster]
	config.AuthInfos[name+"-oidc"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		APIVersion: "client.authentication.k8s.io/v1",
		Command:    "kubectl-tenancy",
		// An absolute path: kubectl runs the plugin in the caller's working directory.
		Args:            []string{"get-token", "--issuer=" + issuer, "--client-id=" + kubectlClientID, "--certificate-authority=" + caFile},
		InstallHint:     "Install the plugin from the Tenancy checkout: go install ./cmd/kubectl-tenancy (and have $(go env GOPATH)/bin on PATH)",
		InteractiveMode: clientcmdapi.IfAvailableExecInteractiveMode,
	}}
	config.Contexts[name+"-oidc"] = &clientcmdapi.Context{Cluster: name, AuthInfo: name + "-oidc"}
	config.CurrentContext = name + "-oidc"
	return clientcmd.WriteToFile(*config, path)
}
