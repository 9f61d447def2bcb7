package authd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// callRoute runs h for a request with body (none when ""), the path's {name} set to name.
func callRoute(h orgHandler, name, body string) (*httptest.ResponseRecorder, error) {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/organizations/acme/things", strings.NewReader(body))
	r.SetPathValue("name", name)
	w := httptest.NewRecorder()
	return w, h(context.Background(), w, r, orgCaller{})
}

func TestAnswerJSONDecodesTheBodyForTheOperation(t *testing.T) {
	create := func(_ context.Context, _ orgCaller, req projectRequest) (projectView, error) {
		return projectView{Name: req.Name, DisplayName: req.DisplayName}, nil
	}
	w, err := callRoute(answerJSON(http.StatusCreated, withBody(create)), "", `{"name":"web","displayName":"Web"}`)
	if err != nil || w.Code != http.StatusCreated {
		t.Fatalf("status %d, error %v", w.Code, err)
	}
	if got := strings.TrimSpace(w.Body.String()); !strings.HasPrefix(got, `{"name":"web","displayName":"Web",`) {
		t.Errorf("body %s", got)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", w.Header().Get("Cache-Control"))
	}

	called := false
	refuse := func(context.Context, orgCaller, projectRequest) (projectView, error) {
		called = true
		return projectView{}, nil
	}
	w, err = callRoute(answerJSON(http.StatusCreated, withBody(refuse)), "", `["not", "an object"]`)
	var p *problem
	if !errors.As(err, &p) || p.Status != http.StatusBadRequest || p.Fields[0].Field != "body" || called || w.Body.Len() != 0 {
		t.Errorf("a body that is not the request type: %v (operation called: %t, answered %q)", err, called, w.Body.String())
	}
}

func TestWithNameAndBodyPassesThePathName(t *testing.T) {
	setRole := func(_ context.Context, _ orgCaller, name string, req roleRequest) (memberView, error) {
		return memberView{Name: name, Role: req.Role}, nil
	}
	w, err := callRoute(answerJSON(http.StatusOK, withNameAndBody(setRole)), "bob", `{"role":"Admin"}`)
	if err != nil || w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"name":"bob","email":"","role":"Admin"`) {
		t.Errorf("status %d, error %v, body %s", w.Code, err, w.Body.String())
	}
}

func TestAnswerJSONLeavesAFailureToTheCaller(t *testing.T) {
	failure := notFound("no such project")
	fail := func(context.Context, orgCaller, string) (projectView, error) { return projectView{}, failure }
	w, err := callRoute(answerJSON(http.StatusOK, withName(fail)), "web", "")
	if !errors.Is(err, failure) || w.Body.Len() != 0 || w.Code != http.StatusOK {
		t.Errorf("error %v, answered %d %q: the error is answered by asUser, nothing before", err, w.Code, w.Body.String())
	}
}

func TestAnswerKeyIsAcceptedWhileTheKeyIsPending(t *testing.T) {
	for _, tc := range []struct {
		reason     string
		err        error
		wantStatus int
		wantErr    bool
		wantBody   string
	}{
		{reason: "issued", wantStatus: http.StatusCreated, wantBody: `{"name":"ci","role":"Member","ready":true,"apiKey":"tnk_secret"}`},
		{reason: "pending", err: fmt.Errorf("%w: APIKey ci", errKeyPending), wantStatus: http.StatusAccepted,
			wantBody: `{"name":"ci","role":"Member","ready":true,"message":"the operator has not issued the key yet: APIKey ci; read it from the APIKey's Secret once it is Ready","apiKey":"tnk_secret"}`},
		{reason: "refused", err: badRequest("role", "no"), wantErr: true, wantStatus: http.StatusOK},
	} {
		issue := func(context.Context, orgCaller, apiKeyRequest) (apiKeyView, error) {
			return apiKeyView{Name: "ci", Role: "Member", Ready: true, APIKey: "tnk_secret"}, tc.err
		}
		w, err := callRoute(answerKey(http.StatusCreated, withBody(issue)), "", `{"name":"ci"}`)
		if (err != nil) != tc.wantErr || w.Code != tc.wantStatus {
			t.Errorf("%s: status %d, error %v", tc.reason, w.Code, err)
		}
		if diff := cmp.Diff(tc.wantBody, strings.TrimSpace(w.Body.String())); diff != "" {
			t.Errorf("%s: body (-want +got):\n%s", tc.reason, diff)
		}
	}
}

func TestAnswerItemsWrapsTheList(t *testing.T) {
	list := func(context.Context, orgCaller) ([]memberView, error) { return []memberView{}, nil }
	w, err := callRoute(answerItems(list), "", "")
	if err != nil || w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != `{"items":[]}` {
		t.Errorf("status %d, error %v, body %s", w.Code, err, w.Body.String())
	}
}
