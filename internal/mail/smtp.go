package mail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/tenancy-dev/tenancy/internal/loopback"
)

// TLSMode is how the connection to the SMTP server is protected.
type TLSMode string

const (
	// ImplicitTLS speaks TLS from the first byte (smtps://, usually port 465).
	ImplicitTLS TLSMode = "implicit"
	// StartTLSRequired upgrades with STARTTLS and refuses a server that does not offer it.
	StartTLSRequired TLSMode = "required"
	// StartTLSOpportunistic upgrades when the server offers STARTTLS, and goes on in clear text
	// otherwise.
	StartTLSOpportunistic TLSMode = "opportunistic"
	// NoTLS never upgrades: for a mail catcher on the same machine.
	NoTLS TLSMode = "none"
)

// SMTPConfig is where and how mail is handed over, parsed from --smtp-url.
type SMTPConfig struct {
	Host     string
	Port     int
	Username string
	Password string
	TLS      TLSMode
	// From is the sender of every mail (--mail-from).
	From string
}

// ParseSMTPURL reads smtp://[user:pass@]host[:port][?starttls=required|opportunistic|none] and
// smtps://[user:pass@]host[:port]. smtp:// defaults to port 587 and required STARTTLS, smtps://
// to port 465. Credentials never cross the network in clear text: with starttls=none or
// opportunistic they are accepted only for a loopback host.
func ParseSMTPURL(raw, from string) (SMTPConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return SMTPConfig{}, fmt.Errorf("--smtp-url: %q is not a URL", redact(raw))
	}
	c := SMTPConfig{Host: u.Hostname()}
	defaultPort := 587
	switch u.Scheme {
	case "smtp":
		c.TLS = StartTLSRequired
		if mode := u.Query().Get("starttls"); mode != "" {
			c.TLS = TLSMode(mode)
		}
		switch c.TLS {
		case StartTLSRequired, StartTLSOpportunistic, NoTLS:
		default:
			return SMTPConfig{}, fmt.Errorf("--smtp-url: starttls=%q must be required, opportunistic or none", c.TLS)
		}
	case "smtps":
		c.TLS, defaultPort = ImplicitTLS, 465
		if u.Query().Has("starttls") {
			return SMTPConfig{}, errors.New("--smtp-url: smtps:// speaks TLS from the start; starttls applies to smtp:// only")
		}
	default:
		return SMTPConfig{}, fmt.Errorf("--smtp-url: scheme %q must be smtp or smtps", u.Scheme)
	}
	if c.Host == "" {
		return SMTPConfig{}, fmt.Errorf("--smtp-url: %q names no host", redact(raw))
	}
	c.Port = defaultPort
	if p := u.Port(); p != "" {
		if c.Port, err = strconv.Atoi(p); err != nil || c.Port < 1 || c.Port > 65535 {
			return SMTPConfig{}, fmt.Errorf("--smtp-url: port %q is not a port number", p)
		}
	}
	for key := range u.Query() {
		if key != "starttls" {
			return SMTPConfig{}, fmt.Errorf("--smtp-url: unknown parameter %q (only starttls)", key)
		}
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
		if c.TLS != ImplicitTLS && c.TLS != StartTLSRequired && !loopback.Host(c.Host) {
			return SMTPConfig{}, fmt.Errorf("--smtp-url: starttls=%s would send the credentials in clear text to %s; use smtps:// or starttls=required", c.TLS, c.Host)
		}
	}
	addr, err := mail.ParseAddress(from)
	if err != nil {
		return SMTPConfig{}, fmt.Errorf("--mail-from: %q is not an address such as \"Tenancy <no-reply@example.com>\": %v", from, err)
	}
	c.From = addr.String()
	return c, nil
}

// DefaultFrom is from, or, when it is empty, "Tenancy <no-reply@host>" with the host of publicURL.
func DefaultFrom(from, publicURL string) string {
	if from != "" {
		return from
	}
	host := "localhost"
	if u, err := url.Parse(publicURL); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	return "Tenancy <no-reply@" + host + ">"
}

// Describe names the mail server of c for logs, without its password; "off" for none.
func Describe(c *SMTPConfig) string {
	if c == nil {
		return "off"
	}
	return c.String()
}

// String is the URL without its password, for logs.
func (c SMTPConfig) String() string {
	scheme := "smtp"
	if c.TLS == ImplicitTLS {
		scheme = "smtps"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port))}
	if c.Username != "" {
		u.User = url.User(c.Username)
	}
	if scheme == "smtp" {
		u.RawQuery = "starttls=" + string(c.TLS)
	}
	return u.String()
}

// redact hides the password of a URL that failed to parse.
func redact(raw string) string {
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		if scheme := strings.Index(raw, "://"); scheme >= 0 && scheme < at {
			return raw[:scheme+3] + "…@" + raw[at+1:]
		}
	}
	return raw
}

// Sender hands messages to a mail server.
type Sender interface {
	// Send delivers the messages over one connection and answers one result per message.
	Send(ctx context.Context, msgs []Message) []error
}

// SendError is a message's failure; Permanent when the server refused it for good (a 5xx
// answer), so that retrying is pointless.
type SendError struct {
	Err       error
	Permanent bool
}

func (e *SendError) Error() string { return e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }

// SMTP sends through an SMTP server.
type SMTP struct {
	Config SMTPConfig
	// Timeout bounds each conversation step; 30 s when zero.
	Timeout time.Duration
}

// Send dials the server once and sends each message. A failure to connect or to log in is
// temporary for every message: the server or its credentials may be fixed before the retry.
func (s SMTP) Send(ctx context.Context, msgs []Message) []error {
	results := make([]error, len(msgs))
	fail := func(err error) []error {
		for i := range results {
			results[i] = &SendError{Err: err}
		}
		return results
	}
	built := make([]*gomail.Msg, len(msgs))
	for i, m := range msgs {
		gm, err := s.build(m)
		if err != nil {
			results[i] = &SendError{Err: err, Permanent: true}
			continue
		}
		built[i] = gm
	}
	client, err := s.client()
	if err != nil {
		return fail(err)
	}
	if err := client.DialWithContext(ctx); err != nil {
		return fail(fmt.Errorf("connecting to %s: %w", s.Config, err))
	}
	defer func() { _ = client.Close() }()
	for i, gm := range built {
		if gm == nil {
			continue
		}
		if err := client.Send(gm); err != nil {
			var se *gomail.SendError
			permanent := errors.As(err, &se) && se.ErrorCode() >= 500 && se.ErrorCode() < 600
			results[i] = &SendError{Err: err, Permanent: permanent}
		}
	}
	return results
}

func (s SMTP) client() (*gomail.Client, error) {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	opts := []gomail.Option{gomail.WithPort(s.Config.Port), gomail.WithTimeout(timeout)}
	switch s.Config.TLS {
	case ImplicitTLS:
		opts = append(opts, gomail.WithSSL())
	case StartTLSRequired:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case StartTLSOpportunistic:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case NoTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.Config.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(s.Config.Username), gomail.WithPassword(s.Config.Password))
	}
	return gomail.NewClient(s.Config.Host, opts...)
}

func (s SMTP) build(m Message) (*gomail.Msg, error) {
	gm := gomail.NewMsg()
	if err := gm.From(s.Config.From); err != nil {
		return nil, fmt.Errorf("from %q: %w", s.Config.From, err)
	}
	if err := gm.To(m.To); err != nil {
		return nil, fmt.Errorf("recipient %q: %w", m.To, err)
	}
	gm.Subject(m.Subject)
	gm.SetMessageID()
	gm.SetDate()
	// RFC 3834: no vacation replies to a machine's mail.
	gm.SetGenHeader("Auto-Submitted", "auto-generated")
	gm.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		gm.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return gm, nil
}
