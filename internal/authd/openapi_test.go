package authd

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIDocumentsEveryRoute keeps openapi.json true: every JSON route authd serves is in it
// with its method, and docs/openapi.json is the same file.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, methods := range doc.Paths {
		for method := range methods {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	served := map[string]bool{}
	(&Server{}).jsonRoutes(func(pattern string, _ http.HandlerFunc) {
		served[pattern] = true
		if !documented[pattern] {
			t.Errorf("%s is served but not in openapi.json", pattern)
		}
	})
	for route := range documented {
		method, path, _ := strings.Cut(route, " ")
		if !served[route] && !slices.Contains([]string{"/healthz", "/readyz"}, path) {
			t.Errorf("%s %s is in openapi.json but not served", method, path)
		}
	}
	docsCopy, err := os.ReadFile(filepath.Join("..", "..", "docs", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(docsCopy, openAPIDocument) {
		t.Error("docs/openapi.json differs from internal/authd/openapi.json: copy it over")
	}
}
