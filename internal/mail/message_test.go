package mail

import (
	"strings"
	"testing"
	"time"
)

func TestRenderEveryKind(t *testing.T) {
	templates, err := ParseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	data := Data{
		Link: "https://auth.example.com/reset?token=tok_abc", ExpiresAt: time.Now().Add(15 * time.Minute),
		Organization: "acme", Project: "web", Role: "Admin", InvitedBy: "owner@example.com",
		At: time.Now(), Address: "203.0.113.7", Device: "Firefox on Linux", KeyName: "ci", AccountURL: "https://auth.example.com/account",
	}
	for _, kind := range Kinds {
		m, err := templates.Render(kind, "alice@example.com", data)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if m.Kind != kind || m.To != "alice@example.com" || m.Subject == "" || strings.Contains(m.Subject, "\n") {
			t.Errorf("%s: kind, recipient or one-line subject wrong: %+v", kind, m)
		}
		if !strings.Contains(m.HTML, "<!DOCTYPE html>") || !strings.Contains(m.HTML, "</html>") {
			t.Errorf("%s: the HTML is not a whole page:\n%s", kind, m.HTML)
		}
		if strings.Contains(m.Text, "<p>") || strings.Contains(m.Text, "{{") || strings.Contains(m.HTML, "{{") {
			t.Errorf("%s: the text holds markup or template syntax:\n%s", kind, m.Text)
		}
	}
	reset, _ := templates.Render(PasswordReset, "alice@example.com", data)
	if !strings.Contains(reset.Text, data.Link) || !strings.Contains(reset.HTML, `href="https://auth.example.com/reset?token=tok_abc"`) {
		t.Errorf("the reset mail carries its link in both bodies:\n%s\n%s", reset.Text, reset.HTML)
	}
	if !strings.Contains(reset.Text, "15 minutes") {
		t.Errorf("the reset mail tells how long the link works:\n%s", reset.Text)
	}
}

// An organization's name is chosen by a tenant: it must not inject markup into a mail that
// another person reads.
func TestRenderEscapesHTML(t *testing.T) {
	templates, err := ParseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	m, err := templates.Render(Invitation, "bob@example.com", Data{
		Organization: `<a href="https://evil.example">win</a>`, Role: "Member",
		Link: "https://auth.example.com/invite?token=x", ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, `<a href="https://evil.example">`) || !strings.Contains(m.HTML, "&lt;a href=") {
		t.Errorf("the organization's name is not escaped:\n%s", m.HTML)
	}
	if _, err := templates.Render("nonsense", "bob@example.com", Data{}); err == nil {
		t.Error("an unknown kind renders")
	}
}

func TestRetryDelay(t *testing.T) {
	d := &Dispatcher{opts: DispatcherOptions{RetryDelay: 30 * time.Second, MaxRetryDelay: 5 * time.Minute}.withDefaults()}
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := d.retryDelay(i + 1); got != w {
			t.Errorf("after %d failures: %s, want %s", i+1, got, w)
		}
	}
}
