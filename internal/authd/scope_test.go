package authd

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestChooseAccess(t *testing.T) {
	const (
		acme  = "11111111-1111-1111-1111-111111111111"
		beta  = "22222222-2222-2222-2222-222222222222"
		web   = "33333333-3333-3333-3333-333333333333"
		api   = "44444444-4444-4444-4444-444444444444"
		idOrg = "55555555-5555-5555-5555-555555555555" // an organization named like acme's id
	)
	str := func(s string) *string { return &s }
	m := func(orgID, orgName string, project *string, projectName *string, role, state string) membership {
		return membership{OrgID: orgID, OrgName: orgName, ProjectID: project, ProjectName: projectName, Role: role, State: state}
	}
	all := []membership{
		m(acme, "acme", nil, nil, "Viewer", "Active"),
		m(acme, "acme", str(web), str("web"), "Admin", "Active"),
		m(beta, "beta", str(api), str("api"), "Member", "Active"),
		m(beta, "beta", nil, nil, "Owner", "Invited"), // grants nothing until accepted
		m(idOrg, acme, nil, nil, "Owner", "Active"),
	}
	cases := []struct {
		reason        string
		ms            []membership
		org, project  string
		wantOrg, role string
		wantProject   string
		wantErr       bool
	}{
		{"several organizations and no name: no organization", all, "", "", "", "", "", false},
		{"by name, the organization role", all, "acme", "", acme, "Viewer", "", false},
		{"by id, never the organization named like it", all, acme, "", acme, "Viewer", "", false},
		{"the name that looks like an id is taken as an id", all, idOrg, "", idOrg, "Owner", "", false},
		{"a project role above the organization's", all, "acme", "web", acme, "Admin", web, false},
		{"the only project membership, when no organization role", all, "beta", "", beta, "Member", api, false},
		{"an invited membership grants nothing", all[3:4], "beta", "", "", "", "", true},
		{"no membership there", all, "gamma", "", "", "", "", true},
		{"a project the user does not belong to", all, "beta", "billing", "", "", "", true},
		{"the only organization, without a name", all[:2], "", "", acme, "Viewer", "", false},
	}
	if _, err := chooseAccess(all[3:4], "beta", ""); !errors.Is(err, errMembershipNotActive) {
		t.Errorf("an invited membership is told apart from none: %v", err)
	}
	if _, err := chooseAccess(all, "gamma", ""); errors.Is(err, errMembershipNotActive) {
		t.Errorf("no membership is not an invited one: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			a, err := chooseAccess(tc.ms, tc.org, tc.project)
			if tc.wantErr {
				if !errors.Is(err, errNoAccess) {
					t.Fatalf("chooseAccess() = %+v, %v; want errNoAccess", a, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := func(p *string) string {
				if p == nil {
					return ""
				}
				return *p
			}
			if got(a.OrgID) != tc.wantOrg || a.Role != tc.role || got(a.ProjectID) != tc.wantProject {
				t.Fatalf("chooseAccess() = org %q role %q project %q; want %q %q %q", got(a.OrgID), a.Role, got(a.ProjectID), tc.wantOrg, tc.role, tc.wantProject)
			}
		})
	}
}

func TestThrottle(t *testing.T) {
	th := newThrottle(time.Hour, 2)
	for i := range 2 {
		if ok, _ := th.allow("alice"); !ok {
			t.Fatalf("attempt %d is within the burst", i+1)
		}
	}
	ok, wait := th.allow("alice")
	if ok || wait <= 0 || retryAfterSeconds(wait) < 1 {
		t.Fatalf("the third attempt waits: ok %t, wait %s", ok, wait)
	}
	if ok, _ := th.allow("bob"); !ok {
		t.Fatal("another key has its own bucket")
	}
}

func TestPasswords(t *testing.T) {
	weak := PasswordParams{MemoryKiB: 8 * 1024, Time: 1, Threads: 1}
	hash, err := HashPassword("correct horse battery staple", weak)
	if err != nil {
		t.Fatal(err)
	}
	ok, outdated, err := VerifyPassword("correct horse battery staple", hash, OWASPParams)
	if err != nil || !ok || !outdated {
		t.Fatalf("a weaker hash verifies and asks for a rehash: ok %t outdated %t err %v", ok, outdated, err)
	}
	if ok, _, _ := VerifyPassword("wrong", hash, OWASPParams); ok {
		t.Fatal("a wrong password verifies")
	}
	if _, _, err := VerifyPassword("x", "$2a$10$bcrypt", OWASPParams); err == nil {
		t.Fatal("a hash of another scheme is refused")
	}
	if checkNewPassword("short") == nil || checkNewPassword("a long enough password") != nil {
		t.Fatal("new passwords need 12 characters")
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff(3, time.Second, 10*time.Second)
	now := time.Unix(1_000_000, 0)
	for i := range 3 {
		if wait := b.wait("alice", now); wait != 0 {
			t.Fatalf("attempt %d is free, but waits %s", i+1, wait)
		}
		b.fail("alice", now)
	}
	if wait := b.wait("alice", now); wait != 0 {
		t.Fatalf("the attempt after the free failures still goes, waits %s", wait)
	}
	var waits []time.Duration
	for range 6 {
		b.fail("alice", now)
		waits = append(waits, b.wait("alice", now))
	}
	if diff := cmp.Diff([]time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}, waits); diff != "" {
		t.Fatalf("each further failure doubles the wait, up to the maximum (-want +got):\n%s", diff)
	}
	if wait := b.wait("alice", now.Add(10*time.Second)); wait != 0 {
		t.Fatalf("never longer than the maximum after the last failure: %s", wait)
	}
	if wait := b.wait("bob", now); wait != 0 {
		t.Fatal("another key has its own count")
	}
	b.succeed("alice")
	if wait := b.wait("alice", now); wait != 0 {
		t.Fatal("a success forgets the failures")
	}
	b.fail("carol", now)
	b.forgetIdle(now.Add(21 * time.Second))
	if _, kept := b.keys["carol"]; kept {
		t.Fatal("a key idle for twice the maximum is forgotten")
	}
}

func TestClientAddress(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		reason, peer, forwardedFor, want string
		trusted                          []netip.Prefix
	}{
		{reason: "no proxies trusted: the peer", peer: "10.1.2.3:5000", forwardedFor: "203.0.113.1", want: "10.1.2.3"},
		{reason: "an untrusted peer's header is ignored", peer: "198.51.100.9:5000", forwardedFor: "203.0.113.1", trusted: proxies, want: "198.51.100.9"},
		{reason: "a trusted proxy names the client", peer: "10.1.2.3:5000", forwardedFor: "203.0.113.1", trusted: proxies, want: "203.0.113.1"},
		{reason: "what the client wrote further left is ignored", peer: "10.1.2.3:5000", forwardedFor: "192.0.2.66, 203.0.113.1", trusted: proxies, want: "203.0.113.1"},
		{reason: "a chain of trusted proxies", peer: "10.1.2.3:5000", forwardedFor: "203.0.113.1, 10.9.9.9", trusted: proxies, want: "203.0.113.1"},
		{reason: "IPv6", peer: "[fd00::1]:5000", forwardedFor: "2001:db8::7", trusted: proxies, want: "2001:db8::7"},
		{reason: "garbage stops the walk", peer: "10.1.2.3:5000", forwardedFor: "203.0.113.1, not-an-address", trusted: proxies, want: "10.1.2.3"},
		{reason: "only proxies: the leftmost", peer: "10.1.2.3:5000", forwardedFor: "10.7.7.7", trusted: proxies, want: "10.7.7.7"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/auth/login", nil)
		r.RemoteAddr = tc.peer
		r.Header.Set("X-Forwarded-For", tc.forwardedFor)
		if got := clientAddress(r, tc.trusted); got != tc.want {
			t.Errorf("%s: clientAddress() = %s, want %s", tc.reason, got, tc.want)
		}
	}
}
