package testenv_test

import (
	"bytes"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/tenancy-dev/tenancy/internal/testenv"
)

// TestMailpit sends a message as the operator's mailer would (multipart text and HTML, PLAIN
// auth over plain SMTP) and reads it back through the API.
func TestMailpit(t *testing.T) {
	testenv.SkipIfShort(t, "Mailpit (hack/mailpit.sh)")
	mp := testenv.StartMailpit(t)
	ctx := t.Context()

	if !strings.HasPrefix(mp.SMTPAddr(), "127.0.0.1:") || !strings.HasPrefix(mp.WebURL(), "http://127.0.0.1:") {
		t.Fatalf("SMTPAddr %q, WebURL %q: want loopback addresses", mp.SMTPAddr(), mp.WebURL())
	}

	const (
		from    = "noreply@tenancy.example"
		to      = "ada@example.com"
		audit   = "audit@example.com"
		subject = "Verify your address – Tenancy"
		// Longer than a quoted-printable line, so that it arrives split and Mailpit must join it.
		link = "https://tenancy.example/verify?token=0123456789abcdef0123456789abcdef0123456789abcdef&org=acme"
	)
	date := time.Now().Truncate(time.Second)
	raw := multipartMessage(t, from, to, subject, date,
		"Hello Ada,\n\nConfirm your address: "+link+".\n\nSee https://tenancy.example/help for help.\n",
		`<p>Hello Ada,</p><p><a href="`+link+`">Confirm your address</a></p>`)
	host := strings.Split(mp.SMTPAddr(), ":")[0]
	// net/smtp sends PLAIN credentials without TLS only to localhost, which 127.0.0.1 is.
	auth := smtp.PlainAuth("", "tenancy-mailer", "s3cret", host)
	// audit@ is a recipient of the envelope only, as Bcc is.
	if err := smtp.SendMail(mp.SMTPAddr(), auth, from, []string{to, audit}, raw); err != nil {
		t.Fatalf("sending through %s: %v", mp.SMTPAddr(), err)
	}

	got := mp.WaitForMessage(t, ctx, to, "Verify your address")
	if got.Subject != subject || got.From.Address != from || !got.SentTo(to) || got.Username != "tenancy-mailer" {
		t.Errorf("listed message: %+v; want subject %q from %s to %s, authenticated as tenancy-mailer", got, subject, from, to)
	}

	if bcc := mp.WaitForMessage(t, ctx, audit, "Verify"); bcc.ID != got.ID {
		t.Errorf("waiting for the message to %s: got %+v, want the same message as to %s", audit, bcc, to)
	}

	msg, err := mp.Message(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != subject {
		t.Errorf("Subject %q, want %q", msg.Subject, subject)
	}
	if msg.From.Address != from || msg.From.Name != "Tenancy" {
		t.Errorf("From %+v, want Tenancy <%s>", msg.From, from)
	}
	if len(msg.To) != 1 || msg.To[0].Address != to || msg.To[0].Name != "Ada Lovelace" {
		t.Errorf("To %+v, want [Ada Lovelace <%s>]", msg.To, to)
	}
	if !msg.Date.Equal(date) {
		t.Errorf("Date %s, want %s", msg.Date, date)
	}
	if !strings.Contains(msg.Text, "Confirm your address: "+link+".") {
		t.Errorf("Text does not hold the whole link:\n%s", msg.Text)
	}
	if !strings.Contains(msg.HTML, `<a href="`+link+`">Confirm your address</a>`) {
		t.Errorf("HTML does not hold the link:\n%s", msg.HTML)
	}

	if found, ok := testenv.FirstLink(msg.Text, "https://tenancy.example/verify?"); !ok || found != link {
		t.Errorf("FirstLink(Text, verify) = %q, %v; want %q", found, ok, link)
	}
	if found, ok := testenv.FirstLink(msg.Text, "https://tenancy.example/"); !ok || found != link {
		t.Errorf("FirstLink(Text, any page) = %q, %v; want the first link, %q", found, ok, link)
	}

	all, err := mp.Messages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Errorf("Messages: %d, want 1", len(all))
	}
	if err := mp.DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	if all, err = mp.Messages(ctx); err != nil {
		t.Fatal(err)
	}
	if len(all) != 0 {
		t.Errorf("Messages after DeleteAll: %d, want 0", len(all))
	}
}

// multipartMessage is a multipart/alternative message with quoted-printable text and HTML parts
// and an encoded (UTF-8) subject.
func multipartMessage(t *testing.T, from, to, subject string, date time.Time, text, html string) []byte {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for _, part := range []struct{ contentType, content string }{
		{"text/plain; charset=utf-8", text},
		{"text/html; charset=utf-8", html},
	} {
		pw, err := w.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.contentType},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			t.Fatal(err)
		}
		qp := quotedprintable.NewWriter(pw)
		if _, err := qp.Write([]byte(part.content)); err != nil {
			t.Fatal(err)
		}
		if err := qp.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	_, _ = fmt.Fprintf(&msg, "From: Tenancy <%s>\r\n", from)
	_, _ = fmt.Fprintf(&msg, "To: Ada Lovelace <%s>\r\n", to)
	_, _ = fmt.Fprintf(&msg, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	_, _ = fmt.Fprintf(&msg, "Date: %s\r\n", date.Format(time.RFC1123Z))
	_, _ = fmt.Fprintf(&msg, "Message-ID: <%d@tenancy.example>\r\n", date.UnixNano())
	_, _ = fmt.Fprintf(&msg, "MIME-Version: 1.0\r\n")
	_, _ = fmt.Fprintf(&msg, "Content-Type: multipart/alternative; boundary=%q\r\n\r\n", w.Boundary())
	msg.Write(body.Bytes())
	return msg.Bytes()
}

// TestMailpitFirstLink needs no Mailpit: FirstLink is plain text search.
func TestMailpitFirstLink(t *testing.T) {
	for _, c := range []struct {
		body, prefix, want string
		ok                 bool
	}{
		{"Go to https://a.example/x?t=1.", "https://a.example/", "https://a.example/x?t=1", true},
		{"see (https://a.example/x), or https://b.example/y", "https://b.example/", "https://b.example/y", true},
		{"https://a.example/one https://a.example/two", "https://a.example/t", "https://a.example/two", true},
		{"<https://a.example/wiki/Go_(language)>", "https://a.example/", "https://a.example/wiki/Go_(language)", true},
		{`<a href="https://a.example/x?a=1&amp;b=2">`, "https://a.example/x", "https://a.example/x?a=1&amp;b=2", true},
		{"no link here", "https://", "", false},
		{"https://a.example/x", "https://b.example/", "", false},
	} {
		got, ok := testenv.FirstLink(c.body, c.prefix)
		if got != c.want || ok != c.ok {
			t.Errorf("FirstLink(%q, %q) = %q, %v; want %q, %v", c.body, c.prefix, got, ok, c.want, c.ok)
		}
	}
}
