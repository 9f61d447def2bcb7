package operator

import (
	"context"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/tenancy-dev/tenancy/controllers"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/internal/signing"
	"github.com/tenancy-dev/tenancy/internal/tenant"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// Parts says which parts of the operator run; a nil part stays off.
type Parts struct {
	// Controllers reconciles every tenancy kind.
	Controllers *controllers.Settings
	// Webhooks serves the defaulting and validating webhooks on the manager's webhook server.
	Webhooks *webhooks.Settings
	// SigningKeys keeps the access-token signing keys current. Tests that seed and rotate keys
	// themselves leave it off.
	SigningKeys *SigningKeys
	// SMTP, with Controllers, makes the manager send mail (invitations) through this server: a
	// dispatcher delivers the outbox once the schema is migrated.
	SMTP *mail.SMTPConfig
}

// SigningKeys configures the rotation of the Secret tenancy-signing-keys.
type SigningKeys struct {
	// Namespace holds the Secret: the operator's own namespace.
	Namespace string
	// Policy says which algorithm new keys use, when they get a successor and how long before
	// signing they are published.
	Policy signing.Policy
}

// signingKeyCheckInterval is how often the rotator looks at the key set; it must stay well below
// Policy.PublishAhead.
const signingKeyCheckInterval = time.Minute

// Setup adds the parts to mgr, with database as a runnable (it migrates the schema as the
// manager starts) and as the controllers' store and the webhooks' records.
func Setup(ctx context.Context, mgr ctrl.Manager, database *db.Postgres, parts Parts) error {
	if err := mgr.Add(database); err != nil {
		return err
	}
	if parts.SigningKeys != nil {
		if err := mgr.Add(&signing.Rotator{
			Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), Namespace: parts.SigningKeys.Namespace, ContextKeys: database,
			Policy: parts.SigningKeys.Policy, Interval: signingKeyCheckInterval,
		}); err != nil {
			return err
		}
	}
	if err := tenant.Setup(ctx, mgr); err != nil {
		return err
	}
	if parts.Webhooks != nil {
		if err := webhooks.SetupWithManager(ctx, mgr, database, *parts.Webhooks); err != nil {
			return err
		}
	}
	if parts.Controllers == nil {
		return nil
	}
	settings := *parts.Controllers
	if parts.SMTP != nil {
		mailer, err := mail.NewMailer(database.Pool(), *parts.SMTP, ctrlmetrics.Registry, mgr.GetLogger().WithName("mail"))
		if err != nil {
			return err
		}
		mailer.Dispatcher.WaitFor(database.Migrated)
		if err := mgr.Add(mailer.Dispatcher); err != nil {
			return err
		}
		settings.Mail = mailer
	}
	return controllers.SetupWithManager(mgr, database, settings)
}
