package authd

import (
	"net/http"
	"time"

	"github.com/tenancy-dev/tenancy/internal/mail"
)

// Config is authd's behaviour.
type Config struct {
	// Issuer is the iss of every token and the base of the discovery document.
	Issuer string
	// Audience is the aud of every access token.
	Audience string
	// AccessTokenTTL is the lifetime of access tokens (at most signing.MaxTokenLifetime).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is how long a refresh token may wait for its use.
	RefreshTokenTTL time.Duration
	// SessionLifetime caps a session (a refresh token family), however often it is refreshed.
	SessionLifetime time.Duration
	// RefreshReuseInterval lets concurrent refreshes with the same token through.
	RefreshReuseInterval time.Duration
	// AllowSignup opens /auth/signup.
	AllowSignup bool
	// OperatorNamespace holds the signing keys; organizations made at signup go to their own.
	OperatorNamespace string
	// Passwords are the argon2id parameters of new hashes.
	Passwords PasswordParams
	// Throttle bounds password attempts per client address and per account.
	Throttle ThrottleConfig
	// SignupTimeout is how long signup waits for the new Organization and Membership to be Ready.
	SignupTimeout time.Duration
	// PublicURL is where people reach authd: the base of the web pages and of the cookies'
	// Secure attribute (left off only for http://localhost and 127.0.0.1, in development).
	PublicURL string
	// UsernamePrefix turns a user's email into their Kubernetes username, as the manager's
	// --username-prefix does.
	UsernamePrefix string
	// PlatformAdminUsers are Kubernetes usernames authd never acts as, whatever a user's email;
	// with PlatformAdminGroups they name the identities that may use the admin API, as the
	// manager's flags of the same names do for the webhooks.
	PlatformAdminUsers  []string
	PlatformAdminGroups []string
	// SMTP is the mail server of the links and notices authd mails; nil sends no mail.
	SMTP *mail.SMTPConfig
}

// maxBodyBytes bounds request bodies; maxHeaderBytes the header block (see NewHTTPServer).
const (
	maxBodyBytes   = 64 << 10
	maxHeaderBytes = 16 << 10
)

// NewHTTPServer serves h on addr with authd's limits.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr: addr, Handler: h, MaxHeaderBytes: maxHeaderBytes,
		// Signup may wait --signup-timeout and then undo for up to 30 s more.
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
	}
}
