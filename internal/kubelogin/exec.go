package kubelogin

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	"sigs.k8s.io/yaml"
)

// execAPIVersion is the version of the exec credential protocol between client-go and the plugin.
const execAPIVersion = "client.authentication.k8s.io/v1"

// ExecCredential is what an exec credential plugin prints for client-go: the ID token as the
// bearer token, and its expiry, after which client-go runs the plugin again.
func ExecCredential(c Credential) ([]byte, error) {
	expiry := metav1.NewTime(c.Expiry)
	return json.Marshal(clientauthv1.ExecCredential{
		TypeMeta: metav1.TypeMeta{APIVersion: execAPIVersion, Kind: "ExecCredential"},
		Status:   &clientauthv1.ExecCredentialStatus{Token: c.IDToken, ExpirationTimestamp: &expiry},
	})
}

// kubeconfigExec is a kubeconfig user's exec section (clientcmd's v1.ExecConfig without the
// fields left out here, such as an empty env).
type kubeconfigExec struct {
	APIVersion         string   `json:"apiVersion"`
	Command            string   `json:"command"`
	Args               []string `json:"args"`
	InstallHint        string   `json:"installHint"`
	InteractiveMode    string   `json:"interactiveMode"`
	ProvideClusterInfo bool     `json:"provideClusterInfo"`
}

// KubeconfigUser is the kubeconfig `users:` stanza of a user name that runs
// `kubectl-tenancy <args…>`; args start with the subcommand, get-token.
func KubeconfigUser(name string, args []string) string {
	type user struct {
		Exec kubeconfigExec `json:"exec"`
	}
	type namedUser struct {
		Name string `json:"name"`
		User user   `json:"user"`
	}
	stanza := struct {
		Users []namedUser `json:"users"`
	}{Users: []namedUser{{Name: name, User: user{Exec: kubeconfigExec{
		APIVersion: execAPIVersion, Command: "kubectl-tenancy", Args: args,
		InstallHint:     "Install kubectl-tenancy on your PATH: go install github.com/tenancy-dev/tenancy/cmd/kubectl-tenancy@latest",
		InteractiveMode: "IfAvailable",
	}}}}}
	out, err := yaml.Marshal(stanza)
	if err != nil {
		panic(err) // strings and a bool always marshal
	}
	return string(out)
}
