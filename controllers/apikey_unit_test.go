package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
)

func TestIssueReasonSaysWhyTheKeyIsReplaced(t *testing.T) {
	issued := &tenancyv1.APIKey{Status: tenancyv1.APIKeyStatus{KeyID: "key-1"}}
	holding := func(keyID string) *corev1.Secret {
		return &corev1.Secret{Data: map[string][]byte{tenancyv1.APIKeyIDSecretKey: []byte(keyID)}}
	}
	row := func(rotation string, revoked bool) *db.APIKeyRow {
		return &db.APIKeyRow{KeyID: "key-1", Rotation: rotation, Revoked: revoked}
	}
	cases := []struct {
		name        string
		key         *tenancyv1.APIKey
		current     *db.APIKeyRow
		rotation    string
		secret      *corev1.Secret
		secretFound bool
		want        string
	}{
		{"a new APIKey", &tenancyv1.APIKey{}, nil, "", &corev1.Secret{}, false, reasonCreated},
		{"the row deleted by hand after the first key", issued, nil, "", holding("key-1"), true, reasonRowLost},
		{"the row revoked by hand", issued, row("", true), "", holding("key-1"), true, reasonRowLost},
		{"spec.rotation changed", issued, row("2025-01", false), "2025-02", holding("key-1"), true, reasonRotation},
		{"a rotation and a deleted Secret: the rotation is the reason", issued, row("a", false), "b", &corev1.Secret{}, false, reasonRotation},
		{"the Secret deleted", issued, row("", false), "", &corev1.Secret{}, false, reasonSecretDeleted},
		{"the Secret holds another key", issued, row("", false), "", holding("key-0"), true, reasonSecretStale},
		{"the Secret lost its key", issued, row("", false), "", &corev1.Secret{}, true, reasonSecretStale},
		{"all in line: the key stays", issued, row("r", false), "r", holding("key-1"), true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := issueReason(tc.key, tc.current, tc.rotation, tc.secret, tc.secretFound); got != tc.want {
				t.Errorf("issueReason = %q, want %q", got, tc.want)
			}
		})
	}
}
