package chart_test

import (
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
)

// TestLint: `helm lint` finds nothing above INFO (the chart has no icon), with the default values
// and with a values file that changes every one of them.
func TestLint(t *testing.T) {
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		values    map[string]any
		namespace string
	}{
		{name: "default values", values: nil, namespace: defaultNamespace},
		{name: "testdata/nondefault-values.yaml", values: valuesFile(t, "nondefault-values.yaml"), namespace: "platform-tenancy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			result := lint.RunAll(chartDir(), tc.values, tc.namespace, lint.WithKubeVersion(kv))
			for _, m := range result.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %v", m)
				} else {
					t.Logf("helm lint: %v", m)
				}
			}
		})
	}
}
