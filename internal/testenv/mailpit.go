package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tenancy-dev/tenancy/internal/mail"
)

// MailpitBinary is the path of Mailpit, the mail catcher: $TENANCY_MAILPIT, or what
// hack/mailpit.sh builds (once) and caches. It fails under -short (see SkipIfShort).
func MailpitBinary() (string, error) {
	if err := refuseUnderShort("Mailpit is needed"); err != nil {
		return "", err
	}
	if path := os.Getenv("TENANCY_MAILPIT"); path != "" {
		return path, nil
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "mailpit.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/mailpit.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Mailpit is a mail catcher of one test's own: an SMTP server that keeps whatever it is sent and
// accepts any credentials over plain SMTP, and a client of its REST API (/api/v1) to read what
// arrived.
type Mailpit struct {
	// Process is the running Mailpit; its log is in Process.LogPath.
	Process  *Process
	smtpPort int
	webURL   string
	http     *http.Client
}

// MailpitAt is a client of the Mailpit already running at webURL (make dev's), for its API only.
func MailpitAt(webURL string) *Mailpit {
	return &Mailpit{webURL: strings.TrimSuffix(webURL, "/"), http: &http.Client{Timeout: 10 * time.Second}}
}

// mailpitStartTimeout bounds how long StartMailpit waits for Mailpit to answer.
const mailpitStartTimeout = 30 * time.Second

// mailpitWaitTimeout bounds WaitForMessage when its context has no earlier deadline.
const mailpitWaitTimeout = 30 * time.Second

// StartMailpit runs Mailpit (MailpitBinary) on free loopback ports, with its database in a
// temporary directory, waits until its SMTP server and API answer, and stops it when t ends.
// Its log goes to the temporary directory and into t's log if t fails.
func StartMailpit(t TB) *Mailpit {
	t.Helper()
	bin, err := MailpitBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := startMailpit(bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after t.TempDir's cleanup, so it runs first: Mailpit ends before its directory
	// goes.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Mailpit's log:\n%s", m.Process.Log())
		}
		if err := m.Process.Stop(10 * time.Second); err != nil {
			t.Errorf("stopping Mailpit: %v", err)
		}
	})
	return m
}

func startMailpit(bin, dir string) (*Mailpit, error) {
	smtpPort, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("mailpit: finding a free SMTP port: %w", err)
	}
	webPort, err := FreePort()
	if err != nil {
		return nil, fmt.Errorf("mailpit: finding a free HTTP port: %w", err)
	}
	m := MailpitAt("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(webPort)))
	m.smtpPort = smtpPort
	m.Process, err = StartProcess("mailpit", filepath.Join(dir, "mailpit.log"), bin,
		"--smtp", m.SMTPAddr(),
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(webPort)),
		"--database", filepath.Join(dir, "mailpit.db"),
		// Any username and password, over plain SMTP: the tests send what the operator's
		// mailer sends, credentials included, without TLS.
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure",
		// Nothing leaves the machine: no reverse DNS of the sender, no check for a new release.
		"--smtp-disable-rdns", "--disable-version-check",
	)
	if err != nil {
		return nil, err
	}
	if err := m.waitReady(); err != nil {
		m.Process.Kill()
		return nil, fmt.Errorf("%w\nMailpit's log:\n%s", err, m.Process.Log())
	}
	return m, nil
}

// waitReady waits until the SMTP port accepts connections and /readyz answers 200.
func (m *Mailpit) waitReady() error {
	deadline := time.Now().Add(mailpitStartTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if exited, err := m.Process.Exited(); exited {
			return fmt.Errorf("mailpit exited while starting: %v", err)
		}
		lastErr = m.ready()
		if lastErr == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("mailpit did not answer within %s: %w", mailpitStartTimeout, lastErr)
}

func (m *Mailpit) ready() error {
	conn, err := net.DialTimeout("tcp", m.SMTPAddr(), time.Second)
	if err != nil {
		return fmt.Errorf("SMTP: %w", err)
	}
	_ = conn.Close()
	resp, err := m.http.Get(m.WebURL() + "/readyz")
	if err != nil {
		return fmt.Errorf("GET /readyz: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /readyz: %s", resp.Status)
	}
	return nil
}

// SMTPAddr is the host:port of the SMTP server (127.0.0.1:P), as net/smtp dials it.
func (m *Mailpit) SMTPAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.smtpPort))
}

// SMTPConfig is how authd and the manager reach this Mailpit: plain SMTP on loopback, from
// no-reply@tenancy.test.
func (m *Mailpit) SMTPConfig() mail.SMTPConfig {
	return mail.SMTPConfig{Host: "127.0.0.1", Port: m.smtpPort, TLS: mail.NoTLS, From: `"Tenancy" <no-reply@tenancy.test>`}
}

// WebURL is the base URL of the web UI and the REST API: http://127.0.0.1:Q.
func (m *Mailpit) WebURL() string { return m.webURL }

// MailpitAddress is a mailbox of a message's header: "Name <Address>".
type MailpitAddress struct {
	Name    string
	Address string
}

// MailpitMessage is a message as Mailpit lists it (its summary).
type MailpitMessage struct {
	// ID is Mailpit's id of the message, for Message.
	ID   string
	From MailpitAddress
	To   []MailpitAddress
	Cc   []MailpitAddress
	// Bcc holds the Bcc header and, as Mailpit adds them, the envelope recipients that no header
	// names.
	Bcc     []MailpitAddress
	Subject string
	// Created is when Mailpit received the message.
	Created time.Time
	// Username is the SMTP AUTH username the sender gave, if any.
	Username string
}

// SentTo reports whether address (case aside) is one of the message's recipients: To, Cc or
// Bcc, which holds the envelope's other recipients.
func (msg MailpitMessage) SentTo(address string) bool {
	for _, recipients := range [][]MailpitAddress{msg.To, msg.Cc, msg.Bcc} {
		for _, r := range recipients {
			if strings.EqualFold(r.Address, address) {
				return true
			}
		}
	}
	return false
}

// MailpitMessageDetail is a whole message: its headers and its decoded bodies.
type MailpitMessageDetail struct {
	ID      string
	From    MailpitAddress
	To      []MailpitAddress
	Subject string
	// Date is the Date header (when the message has none, when Mailpit received it).
	Date time.Time
	// Text is the text/plain body, decoded; HTML is the text/html body, decoded.
	Text string
	HTML string
}

// mailpitPage is what /api/v1/messages and /api/v1/search answer.
type mailpitPage struct {
	Messages []MailpitMessage `json:"messages"`
}

// mailpitPageSize is how many summaries one request lists (Mailpit's default is 50).
const mailpitPageSize = 200

// Messages lists every message Mailpit holds, newest first.
func (m *Mailpit) Messages(ctx context.Context) ([]MailpitMessage, error) {
	return m.list(ctx, "/api/v1/messages", url.Values{})
}

// search lists the messages that match a Mailpit search query (to:..., subject:...), newest
// first.
func (m *Mailpit) search(ctx context.Context, query string) ([]MailpitMessage, error) {
	return m.list(ctx, "/api/v1/search", url.Values{"query": {query}})
}

// list reads every page of a listing endpoint.
func (m *Mailpit) list(ctx context.Context, path string, query url.Values) ([]MailpitMessage, error) {
	var all []MailpitMessage
	for {
		query.Set("start", strconv.Itoa(len(all)))
		query.Set("limit", strconv.Itoa(mailpitPageSize))
		var page mailpitPage
		if err := m.call(ctx, http.MethodGet, path+"?"+query.Encode(), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if len(page.Messages) < mailpitPageSize {
			return all, nil
		}
	}
}

// Message reads the message with Mailpit's id id (MailpitMessage.ID). Mailpit marks it read.
func (m *Mailpit) Message(ctx context.Context, id string) (MailpitMessageDetail, error) {
	var msg MailpitMessageDetail
	err := m.call(ctx, http.MethodGet, "/api/v1/message/"+url.PathEscape(id), &msg)
	return msg, err
}

// DeleteAll deletes every message.
func (m *Mailpit) DeleteAll(ctx context.Context) error {
	return m.call(ctx, http.MethodDelete, "/api/v1/messages", nil)
}

// WaitForMessage polls Mailpit until a message to the address to (MailpitMessage.SentTo; any
// message when to is empty) whose subject contains subjectContains has arrived, and returns the newest such message.
// It fails t, listing what did arrive, at ctx's deadline or after 30 seconds, whichever comes
// first.
func (m *Mailpit) WaitForMessage(t TB, ctx context.Context, to, subjectContains string) MailpitMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, mailpitWaitTimeout)
	defer cancel()
	for {
		msgs, err := m.MessagesTo(ctx, to)
		for _, msg := range msgs {
			if strings.Contains(msg.Subject, subjectContains) {
				return msg
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no message to %q with a subject containing %q arrived in Mailpit (%v; last error: %v); it holds:\n%s",
				to, subjectContains, context.Cause(ctx), err, m.describeAll())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// MessagesTo lists the messages sent to the address to (MailpitMessage.SentTo), newest first;
// every message when to is empty.
func (m *Mailpit) MessagesTo(ctx context.Context, to string) ([]MailpitMessage, error) {
	if to == "" {
		return m.Messages(ctx)
	}
	// Mailpit's search (addressed: matches a substring of any address, the sender's too) has no
	// escape: quotes group words and are dropped, so none may remain.
	found, err := m.search(ctx, `addressed:"`+strings.ReplaceAll(to, `"`, "")+`"`)
	return slices.DeleteFunc(found, func(msg MailpitMessage) bool { return !msg.SentTo(to) }), err
}

// describeAll lists the messages Mailpit holds, one a line, for a failure message.
func (m *Mailpit) describeAll() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := m.Messages(ctx)
	if err != nil {
		return fmt.Sprintf("(listing the messages: %v)", err)
	}
	if len(msgs) == 0 {
		return "(no message)"
	}
	var b strings.Builder
	for _, msg := range msgs {
		to := make([]string, len(msg.To))
		for i, a := range msg.To {
			to[i] = a.Address
		}
		_, _ = fmt.Fprintf(&b, "  %s to %s from %s: %q\n", msg.Created.Format(time.RFC3339), strings.Join(to, ", "),
			msg.From.Address, msg.Subject)
	}
	return b.String()
}

// call sends a request to the API and decodes the JSON answer into out, unless out is nil.
func (m *Mailpit) call(ctx context.Context, method, path string, out any) error {
	what := "mailpit: " + method + " " + strings.SplitN(path, "?", 2)[0]
	req, err := http.NewRequestWithContext(ctx, method, m.WebURL()+path, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", what, resp.Status, strings.TrimSpace(string(body)))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: decoding the answer: %w", what, err)
	}
	return nil
}

// urlPattern matches a URL in text: a scheme, "://", and what follows up to a space, a quote or
// an angle bracket.
var urlPattern = regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://[^\\s<>\"'`]+")

// FirstLink finds the first URL in a text body that starts with prefix (say
// "https://tenancy.example/verify?"). Punctuation that ends a sentence after the URL (".", ",",
// ")", ...) is not part of it. In an HTML body, href values are found too, but entities (&amp;)
// are left as they are.
func FirstLink(body, prefix string) (string, bool) {
	for _, link := range urlPattern.FindAllString(body, -1) {
		link = trimTrailingPunctuation(link)
		if strings.HasPrefix(link, prefix) {
			return link, true
		}
	}
	return "", false
}

// trimTrailingPunctuation drops what ends a sentence or closes a parenthesis around a URL,
// keeping a closing parenthesis the URL opened itself.
func trimTrailingPunctuation(link string) string {
	for link != "" {
		last := link[len(link)-1]
		switch {
		case strings.IndexByte(".,;:!?", last) >= 0:
		case last == ')' && strings.Count(link, "(") < strings.Count(link, ")"):
		case last == ']' && strings.Count(link, "[") < strings.Count(link, "]"):
		default:
			return link
		}
		link = link[:len(link)-1]
	}
	return link
}
