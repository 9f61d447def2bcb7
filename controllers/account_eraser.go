package controllers

import (
	"context"
	"slices"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
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
		if err := e.erasePending(ctx); err != nil && ctx.Err() == nil {
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
	var memberships tenancyv1.MembershipList
	if err := e.Client.List(ctx, &memberships); err != nil {
		return err
	}
	for _, a := range accounts {
		remaining, err := e.deleteMemberships(ctx, a, memberships.Items)
		if err != nil {
			return err
		}
		if remaining > 0 {
			continue // their controller removes them and their rows; a later pass erases the account
		}
		erased, err := e.Store.EraseAccount(ctx, a.UserID, eraserActor, e.notice)
		if err != nil {
			return err
		}
		if erased {
			e.Log.Info("Erased a deleted account", "user", db.DeletedUserName(a.UserID))
		}
	}
	return nil
}

// deleteMemberships deletes the Membership objects that name the account, by the uid of a row
// or by spec.user, and returns how many of them the cache still shows. The account is erased
// only once none is left: their finalizers remove their rows first, and a Membership reconciled
// meanwhile would otherwise create a new user row for the address.
func (e *AccountEraser) deleteMemberships(ctx context.Context, a db.AccountToErase, all []tenancyv1.Membership) (int, error) {
	remaining := 0
	for i := range all {
		m := &all[i]
		if !slices.Contains(a.MembershipUIDs, string(m.UID)) && db.NormalizeEmail(m.Spec.User) != a.Email {
			continue
		}
		remaining++
		if !m.DeletionTimestamp.IsZero() {
			continue
		}
		uid := m.UID
		err := e.Client.Delete(ctx, m, client.Preconditions{UID: &uid})
		if err != nil && !apierrors.IsNotFound(err) {
			return remaining, err
		}
		e.Log.Info("Deleted the Membership of a deleted account", "membership", client.ObjectKeyFromObject(m), "user", db.DeletedUserName(a.UserID))
	}
	return remaining, nil
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
