package authd

import (
	_ "embed"
	"net/http"
)

// openAPIDocument describes every JSON endpoint; docs/openapi.json is the same file (a test
// keeps them equal and checks that every route is in it).
//
//go:embed openapi.json
var openAPIDocument []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(openAPIDocument)
}
