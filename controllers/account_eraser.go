package controllers

import (
	"context"
	"errors"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// AccountEraserStore is the database side of the AccountEraser.
type AccountEraserStore interface {
	AccountsToErase(ctx context.Context, limit int) ([]db.AccountToErase, error)
	EraseAccount(ctx context.Context, userID string, actor db.Actor, notice db.ErasureNotice) (bool, error)
}

// AccountEraser finishes the deletions of accounts that authd accepted (the person's own, or a
// platform admin's): it deletes the account's Membership objects, whose controller removes their
// rows, and then erases the account (db.EraseAccount). authd checked that no organization loses
// its last Owner; the Membership webhook checks it again.
type AccountEraser struct {
	Client client.Client
	Store  AccountEraserStore
	// Mail, when set, confirms the deletion to the address.
	Mail *mail.Mailer
	// Interval is how often it looks for accounts to erase.
	Interval time.Duration
	Log      logr.Logger
}

// eraserActor is how the audit log names the eraser.
var eraserActor = db.Actor{Name: "system:tenancy:account-eraser"}

// +kubebuilder:rbac:groups=tenancy.dev,resources=memberships,verbs=delete

// Start runs until ctx ends; one replica at a time (NeedLeaderElection).
func (e *AccountEraser) Start(ctx context.Context) error {
	ticker := time.NewTicker(e.Interval)
	defer ticker.Stop()
	for {
		// Quiet while the schema is being migrated at start; the next tick tries again.
		if err := e.erasePending(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, db.ErrNotMigrated) {
			e.Log.Error(err, "Erasing deleted accounts; trying again", "after", e.Interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// NeedLeaderElection keeps two replicas from deleting the same objects at once.
func (e *AccountEraser) NeedLeaderElection() bool { return true }

// erasePending does one pass over the accounts to erase.
func (e *AccountEraser) erasePending(ctx context.Context) error {
	accounts, err := e.Store.AccountsToErase(ctx, 100)
	if err != nil || len(accounts) == 0 {
		return err
	}
	for _, a := range accounts {
		// One account that cannot go yet (a webhook refusing, say) must not hold up the others.
		if err := e.erase(ctx, a); err != nil && ctx.Err() == nil {
			e.Log.Error(err, "Erasing a deleted account; trying again", "user", db.DeletedUserName(a.UserID), "after", e.Interval)
		}
	}
	return nil
}

// erase deletes the account's Memberships, or erases it once they are gone.
func (e *AccountEraser) erase(ctx context.Context, a db.AccountToErase) error {
	remaining, err := e.deleteMemberships(ctx, a)
	if err != nil || remaining > 0 {
		return err // their controller removes them and their rows; a later pass erases the account
	}
	erased, err := e.Store.EraseAccount(ctx, a.UserID, eraserActor, e.notice)
	if erased {
		e.Log.Info("Erased a deleted account", "user", db.DeletedUserName(a.UserID))
	}
	return err
}

// deleteMemberships deletes the Membership objects of the account (spec.user, immutable, is the
// address of every row they made), and returns how many of them the cache still shows. The
// account is erased only once none is left: their finalizers remove their rows first, and a
// Membership reconciled meanwhile would otherwise create a new user row for the address.
func (e *AccountEraser) deleteMemberships(ctx context.Context, a db.AccountToErase) (int, error) {
	var memberships tenancyv1.MembershipList
	if err := e.Client.List(ctx, &memberships, client.MatchingFields{tenant.MembershipUser: a.Email}); err != nil {
		return 0, err
	}
	for i := range memberships.Items {
		m := &memberships.Items[i]
		if !m.DeletionTimestamp.IsZero() {
			continue
		}
		uid := m.UID
		if err := e.Client.Delete(ctx, m, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return 0, err
		}
		e.Log.Info("Deleted the Membership of a deleted account", "membership", client.ObjectKeyFromObject(m), "user", db.DeletedUserName(a.UserID))
	}
	return len(memberships.Items), nil
}

// notice is the mail that confirms the deletion, when the operator sends mail.
func (e *AccountEraser) notice(email string) (*mail.Message, error) {
	if e.Mail == nil {
		return nil, nil
	}
	m, err := e.Mail.Templates.Render(mail.AccountDeleted, email, mail.Data{At: time.Now()})
	if err != nil {
		return nil, err
	}
	return &m, nil
}
