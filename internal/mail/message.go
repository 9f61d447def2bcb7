package mail

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/go-logr/logr"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Kind names a mail's template, and labels its metrics.
type Kind string

const (
	// Invitation carries the link that accepts a Membership.
	Invitation Kind = "invitation"
	// VerifyEmail carries the link that proves an address.
	VerifyEmail Kind = "verify_email"
	// PasswordReset carries the link that sets a forgotten password.
	PasswordReset Kind = "password_reset"
	// PasswordChanged tells that the password changed, so that its owner notices if it was not them.
	PasswordChanged Kind = "password_changed"
	// NewSignIn tells of a sign-in from an address the account never signed in from.
	NewSignIn Kind = "new_sign_in"
	// APIKeyExpiring warns that an API key expires soon.
	APIKeyExpiring Kind = "api_key_expiring"
	// AccountDeleted confirms that an account was erased.
	AccountDeleted Kind = "account_deleted"
	// Impersonation tells an organization's Owners that a platform admin acts as one of its members.
	Impersonation Kind = "impersonation"
)

// Kinds are every template.
var Kinds = []Kind{Invitation, VerifyEmail, PasswordReset, PasswordChanged, NewSignIn, APIKeyExpiring, AccountDeleted, Impersonation}

// Message is a rendered mail.
type Message struct {
	Kind    Kind
	To      string
	Subject string
	Text    string
	HTML    string
}

// Data fills the templates; each uses the fields its kind needs.
type Data struct {
	// Link is the one-time link the mail carries.
	Link string
	// ExpiresAt is when the link, or the API key, stops working.
	ExpiresAt time.Time
	// Organization, Project and Role describe an invitation; Organization also an API key's owner.
	Organization string
	Project      string
	Role         string
	// InvitedBy is who made the invitation, when known.
	InvitedBy string
	// At is when the event happened; Address and Device are where it came from.
	At      time.Time
	Address string
	Device  string
	// KeyName is the expiring API key's name.
	KeyName string
	// AccountURL is the account page, where the person can act on a notice.
	AccountURL string
	// Actor, Person and Reason describe an impersonation: the platform admin, the member acted
	// as, and why.
	Actor  string
	Person string
	Reason string
}

//go:embed templates/*.tmpl
var templateFiles embed.FS

// Templates render every Kind.
type Templates struct {
	text map[Kind]*texttemplate.Template
	html map[Kind]*htmltemplate.Template
}

var funcs = map[string]any{
	"when": func(t time.Time) string { return t.UTC().Format("2 January 2006, 15:04 UTC") },
	"until": func(t time.Time) string {
		d := time.Until(t).Round(time.Minute)
		switch {
		case d >= 48*time.Hour:
			return fmt.Sprintf("%d days", int(d.Hours()/24))
		case d >= 2*time.Hour:
			return fmt.Sprintf("%d hours", int(d.Hours()))
		default:
			return fmt.Sprintf("%d minutes", int(d.Minutes()))
		}
	},
}

// ParseTemplates reads the embedded templates: each file templates/<kind>.tmpl defines
// "subject", "text" and "html"; layout.tmpl wraps every "html" in the same page.
func ParseTemplates() (*Templates, error) {
	t := &Templates{text: map[Kind]*texttemplate.Template{}, html: map[Kind]*htmltemplate.Template{}}
	for _, kind := range Kinds {
		file := "templates/" + string(kind) + ".tmpl"
		tt, err := texttemplate.New(string(kind)).Funcs(funcs).ParseFS(templateFiles, file)
		if err != nil {
			return nil, fmt.Errorf("mail template %s: %w", kind, err)
		}
		ht, err := htmltemplate.New(string(kind)).Funcs(funcs).ParseFS(templateFiles, "templates/layout.tmpl", file)
		if err != nil {
			return nil, fmt.Errorf("mail template %s: %w", kind, err)
		}
		for _, name := range []string{"subject", "text"} {
			if tt.Lookup(name) == nil {
				return nil, fmt.Errorf("mail template %s defines no %q", kind, name)
			}
		}
		if ht.Lookup("html") == nil {
			return nil, fmt.Errorf("mail template %s defines no \"html\"", kind)
		}
		t.text[kind], t.html[kind] = tt, ht
	}
	return t, nil
}

// Render makes the mail of kind for the address to.
func (t *Templates) Render(kind Kind, to string, data Data) (Message, error) {
	tt, ok := t.text[kind]
	if !ok {
		return Message{}, fmt.Errorf("no mail template %q", kind)
	}
	var subject, text, html bytes.Buffer
	if err := tt.ExecuteTemplate(&subject, "subject", data); err != nil {
		return Message{}, fmt.Errorf("rendering the subject of %s: %w", kind, err)
	}
	if err := tt.ExecuteTemplate(&text, "text", data); err != nil {
		return Message{}, fmt.Errorf("rendering the text of %s: %w", kind, err)
	}
	if err := t.html[kind].ExecuteTemplate(&html, "layout", data); err != nil {
		return Message{}, fmt.Errorf("rendering the HTML of %s: %w", kind, err)
	}
	return Message{Kind: kind, To: to, Subject: strings.Join(strings.Fields(subject.String()), " "),
		Text: strings.TrimSpace(text.String()) + "\n", HTML: html.String()}, nil
}

// Mailer renders mail for the outbox and wakes its dispatcher once the mail is committed.
type Mailer struct {
	Templates  *Templates
	Dispatcher *Dispatcher
}

// NewMailer parses the templates and makes a dispatcher that sends through server.
func NewMailer(pool *pgxpool.Pool, server SMTPConfig, reg prometheus.Registerer, log logr.Logger) (*Mailer, error) {
	templates, err := ParseTemplates()
	if err != nil {
		return nil, err
	}
	dispatcher, err := NewDispatcher(pool, SMTP{Config: server}, reg, log, DispatcherOptions{})
	if err != nil {
		return nil, err
	}
	return &Mailer{Templates: templates, Dispatcher: dispatcher}, nil
}
