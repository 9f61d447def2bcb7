package controllers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/oauthsecret"
)

func TestClientSecretIssueReasonSaysWhyTheSecretIsReplaced(t *testing.T) {
	issuedAt := metav1.NewTime(time.Now())
	client := func(rotation, statusSecretName string) *tenancyv1.OAuthClient {
		c := &tenancyv1.OAuthClient{ObjectMeta: metav1.ObjectMeta{Name: "portal", Namespace: "acme"},
			Spec: tenancyv1.OAuthClientSpec{Rotation: rotation}}
		if statusSecretName != "" {
			c.Status = tenancyv1.OAuthClientStatus{SecretName: statusSecretName, RotatedAt: &issuedAt}
		}
		return c
	}
	holding := func(clientID, secret string) *corev1.Secret {
		return &corev1.Secret{Data: map[string][]byte{
			tenancyv1.OAuthClientIDSecretKey: []byte(clientID), tenancyv1.OAuthClientSecretKey: []byte(secret)}}
	}
	row := func(rotation string) *db.OAuthClientSecretRow {
		return &db.OAuthClientSecretRow{Hash: oauthsecret.Hash("tcs_current"), Rotation: rotation}
	}
	const name = "portal-oauth-client"
	cases := []struct {
		name        string
		client      *tenancyv1.OAuthClient
		current     *db.OAuthClientSecretRow
		secretName  string
		secret      *corev1.Secret
		secretFound bool
		want        string
	}{
		{"a new OAuthClient", client("", ""), nil, name, &corev1.Secret{}, false, reasonCreated},
		{"the secret's row removed by hand after the first secret", client("", name), nil, name, holding("portal.acme", "tcs_current"), true, reasonSecretRowLost},
		{"spec.rotation changed", client("b", name), row("a"), name, holding("portal.acme", "tcs_current"), true, reasonRotation},
		{"spec.secretName changed", client("", name), row(""), "portal-credentials", &corev1.Secret{}, false, reasonSecretRenamed},
		{"the Secret deleted", client("", name), row(""), name, &corev1.Secret{}, false, reasonSecretDeleted},
		{"the Secret holds another secret", client("", name), row(""), name, holding("portal.acme", "tcs_other"), true, reasonSecretOutdated},
		{"the Secret names another client", client("", name), row(""), name, holding("other.acme", "tcs_current"), true, reasonSecretOutdated},
		{"the Secret lost its keys", client("", name), row(""), name, &corev1.Secret{}, true, reasonSecretOutdated},
		{"all in line: the secret stays", client("r", name), row("r"), name, holding("portal.acme", "tcs_current"), true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := clientSecretIssueReason(tc.client, tc.current, tc.secretName, tc.secret, tc.secretFound); got != tc.want {
				t.Errorf("clientSecretIssueReason = %q, want %q", got, tc.want)
			}
		})
	}
}
