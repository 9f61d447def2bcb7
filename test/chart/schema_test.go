package chart_test

import (
	"strings"
	"testing"
)

// TestSchemaRefusesBadValues: values.schema.json refuses a typo'd key, a wrong type or a value out
// of range, and the error names the field, as `helm install` reports it.
func TestSchemaRefusesBadValues(t *testing.T) {
	ch := loadChart(t)
	for _, tc := range []struct {
		name   string
		values string
		// field is what the error must say: the JSON pointer of the value, or that the key is unknown.
		field string
	}{
		{name: "a typo in a top-level key", values: "serviceMonitors: {enabled: true}", field: "'serviceMonitors' not allowed"},
		{name: "a typo in a component's key", values: "manager: {replica: 3}", field: "'replica' not allowed"},
		{name: "an authd-only key under the manager", values: "manager: {allowSignup: true}", field: "'allowSignup' not allowed"},
		{name: "a typo in a nested key", values: "networkPolicy: {enable: false}", field: "'enable' not allowed"},
		{name: "replicas as a string", values: `authd: {replicas: "2"}`, field: "/authd/replicas"},
		{name: "no replicas", values: "manager: {replicas: 0}", field: "/manager/replicas"},
		{name: "a fractional replica count", values: "manager: {replicas: 1.5}", field: "/manager/replicas"},
		{name: "an unknown certificate mode", values: "webhookCertificates: {mode: cert-manager}", field: "/webhookCertificates/mode"},
		{name: "an issuer in selfSigned mode", values: "webhookCertificates: {mode: selfSigned, issuerRef: {name: corporate-ca}}", field: "/webhookCertificates/issuerRef/name"},
		{name: "signup as a string", values: `authd: {allowSignup: "yes"}`, field: "/authd/allowSignup"},
		{name: "a public URL without a scheme", values: "publicURL: auth.example.com", field: "/publicURL"},
		{name: "a trusted proxy without a prefix length", values: "authd: {trustedProxies: [10.0.0.1]}", field: "/authd/trustedProxies/0"},
		{name: "an unknown pull policy", values: "authd: {image: {pullPolicy: Sometimes}}", field: "/authd/image/pullPolicy"},
		{name: "a tag in the repository", values: "manager: {image: {repository: ghcr.io/tenancy-dev/tenancy-manager:v1}}", field: "/manager/image/repository"},
		{name: "a memory limit that is no quantity", values: "manager: {resources: {limits: {memory: lots}}}", field: "/manager/resources/limits/memory"},
		{name: "platform admins as one string", values: "platformAdminUsers: alice,bob", field: "/platformAdminUsers"},
		{name: "a database Secret without a key", values: "authd: {databaseSecret: {key: null}}", field: "/authd/databaseSecret"},
		{name: "a label that is no string", values: "commonLabels: {example.org/tier: 1}", field: "/commonLabels/example.org~1tier"},
		{name: "an extra argument that is no flag", values: "manager: {extraArgs: [verbose]}", field: "/manager/extraArgs/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderValues(ch, parseValues(t, tc.values), defaultNamespace)
			switch {
			case err == nil:
				t.Fatalf("values %q: the chart renders them; want the schema to refuse them", tc.values)
			case !strings.Contains(err.Error(), "values don't meet the specifications of the schema"):
				t.Fatalf("values %q: refused, but not by the schema: %v", tc.values, err)
			case !strings.Contains(err.Error(), tc.field):
				t.Errorf("values %q: the error does not name %s:\n%v", tc.values, tc.field, err)
			default:
				t.Logf("values %q: %v", tc.values, err)
			}
		})
	}
}
