package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// argoHealthFor is the Argo CD health that matches each kstatus result.
var argoHealthFor = map[kstatus.Status]string{
	kstatus.CurrentStatus:    "Healthy",
	kstatus.InProgressStatus: "Progressing",
	kstatus.FailedStatus:     "Degraded",
}

// TestArgoCDHealthFollowsKstatus runs the Lua health checks of config/argocd with gopher-lua (the
// interpreter Argo CD embeds) on our objects in each state the controllers produce, and expects
// the Argo CD health that matches what kstatus (Flux, kubectl wait) says of the same object.
func TestArgoCDHealthFollowsKstatus(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "argocd", "argocd-cm-patch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var configMap struct{ Data map[string]string }
	if err := yaml.Unmarshal(data, &configMap); err != nil {
		t.Fatalf("config/argocd/argocd-cm-patch.yaml: %v", err)
	}

	// Every object has a status from its creation on: the CRDs default it to observedGeneration -1.
	ready := condition("Ready", "True", "Reconciled", "Reconciled")
	states := []struct {
		name   string
		status map[string]any
	}{
		{"created, not looked at yet", map[string]any{"observedGeneration": int64(-1)}},
		{"ready", map[string]any{"observedGeneration": int64(2), "conditions": []any{ready}}},
		{"spec changed, not reconciled yet", map[string]any{"observedGeneration": int64(1), "conditions": []any{ready}}},
		{"waiting for its organization", map[string]any{"observedGeneration": int64(-1), "conditions": []any{
			condition("Ready", "False", "OrganizationNotReady", "Organization acme has no database row yet"),
			condition("Reconciling", "True", "OrganizationNotReady", "Organization acme has no database row yet"),
		}}},
		{"database unavailable after a spec change", map[string]any{"observedGeneration": int64(1), "conditions": []any{
			condition("Ready", "False", "DatabaseUnavailable", "dial tcp: connection refused"),
			condition("Reconciling", "True", "DatabaseUnavailable", "dial tcp: connection refused"),
		}}},
		{"stalled", map[string]any{"observedGeneration": int64(2), "conditions": []any{
			condition("Ready", "False", "NamespaceConflict", "Namespace acme is already bound to organization other"),
			condition("Stalled", "True", "NamespaceConflict", "Namespace acme is already bound to organization other"),
		}}},
		{"stalled, then changed", map[string]any{"observedGeneration": int64(1), "conditions": []any{
			condition("Ready", "False", "NamespaceConflict", "Namespace acme is already bound to organization other"),
			condition("Stalled", "True", "NamespaceConflict", "Namespace acme is already bound to organization other"),
		}}},
	}

	for _, crd := range readCRDs(t) {
		kind := crd.Spec.Names.Kind
		script, ok := configMap.Data["resource.customizations.health.tenancy.dev_"+kind]
		if !ok {
			t.Errorf("config/argocd: no health check for %s", kind)
			continue
		}
		for _, state := range states {
			obj := map[string]any{
				"apiVersion": "tenancy.dev/v1alpha1", "kind": kind,
				"metadata": map[string]any{"name": "acme", "generation": int64(2)},
				"status":   state.status,
			}
			want, err := kstatus.Compute(&unstructured.Unstructured{Object: obj})
			if err != nil {
				t.Fatal(err)
			}
			status, message, err := runHealthCheck(script, obj)
			if err != nil {
				t.Fatalf("%s, %s: the health check fails: %v", kind, state.name, err)
			}
			if status != argoHealthFor[want.Status] {
				t.Errorf("%s, %s: Argo CD health %s (%q), but kstatus says %s (%s)", kind, state.name, status, message, want.Status, want.Message)
			}
			if message == "" {
				t.Errorf("%s, %s: the health check gives no message", kind, state.name)
			}
		}
	}
}

func condition(condType, status, reason, message string) map[string]any {
	return map[string]any{"type": condType, "status": status, "reason": reason, "message": message,
		"lastTransitionTime": "2026-01-01T00:00:00Z"}
}

// runHealthCheck runs a health script as Argo CD does: the object is the global obj, and the
// script returns a table with status and message.
func runHealthCheck(script string, obj map[string]any) (status, message string, err error) {
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return "", "", err
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, not a table", L.Get(-1).Type())
	}
	return lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message")), nil
}

// toLua converts decoded JSON into Lua values the way Argo CD does: objects and arrays become
// tables, numbers Lua numbers.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, item := range v {
			t.RawSetString(k, toLua(L, item))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	case nil:
		return lua.LNil
	}
	panic(fmt.Sprintf("toLua: unexpected %T", v))
}
