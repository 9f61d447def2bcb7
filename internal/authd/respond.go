package authd

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/tenancy-dev/tenancy/internal/db"
)

// decodeJSON reads a JSON body into v.
func decodeJSON(r *http.Request, v any) error {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("the body is larger than %d bytes", maxBodyBytes)
		}
		return errors.New("the body is not the JSON object this endpoint takes")
	}
	return nil
}

// writeJSON answers v; answers are not cached unless the handler set a Cache-Control of its own.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", firstNonEmpty(w.Header().Get("Cache-Control"), "no-store"))
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// writeError answers {error, error_description}, RFC 6749's shape, on every endpoint.
func writeError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

// problem is a refusal or failure, for a JSON error body or a message on a page.
type problem struct {
	Status  int            `json:"-"`
	Code    string         `json:"error"`
	Message string         `json:"error_description"`
	Fields  []fieldProblem `json:"fields,omitempty"`
}

// fieldProblem is one field the API server or a webhook refused, as kubectl shows it.
type fieldProblem struct {
	Field   string `json:"field"`
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (p *problem) Error() string { return p.Message }

func badRequest(field, message string) *problem {
	return &problem{Status: http.StatusBadRequest, Code: "invalid_request", Message: field + ": " + message,
		Fields: []fieldProblem{{Field: field, Type: "FieldValueInvalid", Message: message}}}
}

func notFound(message string) *problem {
	return &problem{Status: http.StatusNotFound, Code: "not_found", Message: message}
}

// answerError answers err, when there is one: a problem with its own status, or a failure.
func (s *Server) answerError(w http.ResponseWriter, r *http.Request, err error) {
	var p *problem
	switch {
	case err == nil:
	case errors.As(err, &p):
		writeJSON(w, p.Status, p)
	default:
		s.failed(w, r, err)
	}
}

// failed answers an unexpected error: 503 with Retry-After when the database is unreachable
// (clients should retry), 500 otherwise; the details go to the log, never to the client.
func (s *Server) failed(w http.ResponseWriter, r *http.Request, err error) {
	if unavailable(err) {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the service is temporarily unavailable; retry shortly")
		return
	}
	s.log.Error(err, "Request failed", "path", r.URL.Path)
	writeError(w, http.StatusInternalServerError, "server_error", "the server failed; try again")
}

// unavailable reports a failure that retrying later fixes: the database or the Kubernetes API
// unreachable, overloaded or timing out, or no signing key loaded yet.
func unavailable(err error) bool {
	var netErr net.Error
	return db.IsUnavailable(err) || errors.Is(err, errNoSigningKey) || errors.As(err, &netErr) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err) || apierrors.IsTimeout(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsInternalError(err)
}
