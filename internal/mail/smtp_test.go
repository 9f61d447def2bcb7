package mail

import (
	"strings"
	"testing"
)

func TestParseSMTPURL(t *testing.T) {
	const from = "Tenancy <no-reply@example.com>"
	good := []struct {
		url  string
		want SMTPConfig
	}{
		{"smtp://mail.example.com", SMTPConfig{Host: "mail.example.com", Port: 587, TLS: StartTLSRequired}},
		{"smtp://user:p%40ss@mail.example.com:2525", SMTPConfig{Host: "mail.example.com", Port: 2525, TLS: StartTLSRequired, Username: "user", Password: "p@ss"}},
		{"smtps://user:pw@mail.example.com", SMTPConfig{Host: "mail.example.com", Port: 465, TLS: ImplicitTLS, Username: "user", Password: "pw"}},
		{"smtp://127.0.0.1:1025?starttls=none", SMTPConfig{Host: "127.0.0.1", Port: 1025, TLS: NoTLS}},
		{"smtp://u:p@localhost:1025?starttls=opportunistic", SMTPConfig{Host: "localhost", Port: 1025, TLS: StartTLSOpportunistic, Username: "u", Password: "p"}},
		{"smtp://relay.internal?starttls=none", SMTPConfig{Host: "relay.internal", Port: 587, TLS: NoTLS}},
	}
	for _, tc := range good {
		got, err := ParseSMTPURL(tc.url, from)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		tc.want.From = `"Tenancy" <no-reply@example.com>`
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.url, got, tc.want)
		}
		if strings.Contains(got.String(), "p@ss") || strings.Contains(got.String(), ":pw@") {
			t.Errorf("%s: String() shows the password: %s", tc.url, got)
		}
	}
	bad := []struct{ url, from, wantErr string }{
		{"http://mail.example.com", from, `scheme "http" must be smtp or smtps`},
		{"smtp://", from, "names no host"},
		{"smtp://mail.example.com:99999", from, `port "99999"`},
		{"smtp://mail.example.com?starttls=maybe", from, `starttls="maybe" must be required, opportunistic or none`},
		{"smtps://mail.example.com?starttls=none", from, "starttls applies to smtp:// only"},
		{"smtp://mail.example.com?tls=on", from, `unknown parameter "tls"`},
		{"smtp://user:secret@mail.example.com?starttls=none", from, "clear text"},
		{"smtp://user:secret@mail.example.com?starttls=opportunistic", from, "clear text"},
		{"smtp://mail.example.com", "not an address", "--mail-from"},
		{"smtp://user:secret@bad host", from, "--smtp-url"},
	}
	for _, tc := range bad {
		_, err := ParseSMTPURL(tc.url, tc.from)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: got error %v, want one containing %q", tc.url, err, tc.wantErr)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the password: %v", tc.url, err)
		}
	}
}
