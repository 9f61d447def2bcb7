package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/mail"
)

// MembershipStore is the database side of the Membership controller.
type MembershipStore interface {
	UpsertMembership(ctx context.Context, m db.Membership, actor db.Actor) (db.MembershipResult, error)
	DeleteMembership(ctx context.Context, uid, name string, actor db.Actor) error
	CheckInvitation(ctx context.Context, membershipID string, tokenHash []byte) (db.InvitationState, time.Time, error)
	ReplaceInvitation(ctx context.Context, membershipID, orgID string, tokenHash []byte, expires time.Time, actor db.Actor, emailed *mail.Message) error
	VoidInvitations(ctx context.Context, membershipID string) error
}

// MembershipReconciler keeps each Membership's user and membership rows, and its invitation.
type MembershipReconciler struct {
	client.Client
	// APIReader reads Secrets the cache does not hold (those the operator did not label).
	APIReader client.Reader
	Store     MembershipStore
	Recorder  events.EventRecorder
	// ResyncPeriod is how often a Ready membership is reconciled again.
	ResyncPeriod time.Duration
	// PublicURL is authd's public address; invitation links point to its /invite page.
	PublicURL string
	// InvitationTTL is how long an invitation token is valid.
	InvitationTTL time.Duration
	// Mail sends invitations by email; nil when the operator has no SMTP server.
	Mail *mail.Mailer
	// Options tune concurrency and retry backoff.
	Options controller.Options
	// ownStatus holds its last status writes until the cache shows them.
	ownStatus ownStatusWrites
}

type membershipScope struct {
	tenantScope
	membership *tenancyv1.Membership
}

// +kubebuilder:rbac:groups=tenancy.dev,resources=memberships,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=memberships/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=memberships/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete

// Reconcile brings one Membership's rows and invitation in line with its spec.
func (r *MembershipReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return lifecycle[*tenancyv1.Membership]{
		client:    r.Client,
		ownWrites: &r.ownStatus,
		resync:    r.ResyncPeriod,
		newObject: func() *tenancyv1.Membership { return &tenancyv1.Membership{} },
		reconcileNormal: func(ctx context.Context, m *tenancyv1.Membership) (ctrl.Result, error) {
			return runPhases(ctx, &membershipScope{membership: m},
				r.resolveTenant,
				r.reconcileRow,
				r.reconcileInvitation,
			)
		},
		cleanUp: r.cleanUp,
	}.reconcile(ctx, req)
}

func (r *MembershipReconciler) resolveTenant(ctx context.Context, s *membershipScope) (ctrl.Result, error) {
	return resolveTenant(ctx, r.Client, s.membership, &s.tenantScope)
}

// reconcileRow upserts the user and membership rows.
func (r *MembershipReconciler) reconcileRow(ctx context.Context, s *membershipScope) (ctrl.Result, error) {
	m := s.membership
	row := db.Membership{
		ID:             m.Status.ID,
		UID:            string(m.UID),
		Name:           m.Name,
		OrganizationID: s.org.Status.ID,
		ProjectID:      s.projectID,
		Email:          m.Spec.User,
		Role:           string(m.RoleOrDefault()),
		// Only platform admins can set it: the validating webhook refuses everyone else.
		VouchEmail: m.Annotations[tenancyv1.EmailVerifiedAnnotation] == "true",
	}
	actor := actorOf(m, "membership")
	res, err := r.Store.UpsertMembership(ctx, row, actor)
	if dup := (*db.DuplicateMembershipError)(nil); errors.As(err, &dup) {
		holder, lookupErr := r.membershipWithUID(ctx, m.Namespace, dup.UID)
		if lookupErr != nil {
			return ctrl.Result{}, lookupErr
		}
		if holder != nil && !holder.DeletionTimestamp.IsZero() {
			return ctrl.Result{}, waiting(tenancyv1.DuplicateMembershipReason,
				"Membership %s, which holds this scope for the same user, is being deleted", holder.Name)
		}
		if holder != nil {
			return ctrl.Result{}, stalled(tenancyv1.DuplicateMembershipReason,
				"%s already has a membership in this scope: Membership %s", db.NormalizeEmail(m.Spec.User), holder.Name)
		}
		// The row belongs to a Membership that no longer exists: its cleanup never ran.
		if err := r.Store.DeleteMembership(ctx, dup.UID, "orphan", actor); err != nil {
			return ctrl.Result{}, err
		}
		res, err = r.Store.UpsertMembership(ctx, row, actor)
	}
	if db.IsForeignKeyViolation(err) {
		return ctrl.Result{}, waiting(tenancyv1.OrganizationNotReadyReason,
			"The organization or project row of this membership is missing; waiting for it to be restored")
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	reportRowChange(r.Recorder, m, m.Status.ID, res.UpsertResult)
	m.Status.ID = res.ID
	m.Status.UserID = res.UserID
	m.Status.State = tenancyv1.MembershipState(res.State)
	return ctrl.Result{}, nil
}

// membershipWithUID finds the live Membership with uid in the namespace, or nil.
func (r *MembershipReconciler) membershipWithUID(ctx context.Context, namespace, uid string) (*tenancyv1.Membership, error) {
	var list tenancyv1.MembershipList
	if err := r.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing memberships: %w", err)
	}
	i := slices.IndexFunc(list.Items, func(m tenancyv1.Membership) bool { return string(m.UID) == uid })
	if i < 0 {
		return nil, nil
	}
	return &list.Items[i], nil
}

// reconcileInvitation keeps a valid invitation in the Secret <membership>-invite while the
// membership is Invited, and removes it once the membership is Active.
func (r *MembershipReconciler) reconcileInvitation(ctx context.Context, s *membershipScope) (ctrl.Result, error) {
	m := s.membership
	name := m.Name + "-invite"
	// From the cache alone, unlike an API key's Secret: should a Secret of that name exist that the
	// operator did not make, creating ours fails and says so (the invitation just recorded then
	// goes unused). A new membership costs one API read fewer.
	secret, found, err := cachedSecret(ctx, r.Client, m.Namespace, name)
	if err != nil {
		return ctrl.Result{}, err
	}

	if m.Status.State == tenancyv1.MembershipActive {
		m.Status.InviteSecretName = ""
		meta.RemoveStatusCondition(&m.Status.Conditions, tenancyv1.InvitationExpiredCondition)
		// An invitation issued while the acceptance raced this reconcile must not stay usable.
		if err := r.Store.VoidInvitations(ctx, m.Status.ID); err != nil {
			return ctrl.Result{}, err
		}
		if found && metav1.IsControlledBy(secret, m) {
			if err := r.Delete(ctx, secret); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("deleting the accepted invitation %s: %w", name, err)
			}
		}
		return ctrl.Result{}, nil
	}

	if found && !metav1.IsControlledBy(secret, m) {
		return ctrl.Result{}, secretConflict(name)
	}
	if r.deliveryOf(m) == tenancyv1.InvitationByEmail && r.Mail == nil {
		return ctrl.Result{}, stalled("MailNotConfigured",
			"spec.invitation.delivery is Email, but the operator sends no mail (no --smtp-url); configure mail or set delivery Link")
	}
	if found {
		state, expires, err := r.invitationState(ctx, m, secret)
		if err != nil {
			return ctrl.Result{}, err
		}
		switch state {
		case db.InvitationValid:
			m.Status.InviteSecretName = name
			meta.RemoveStatusCondition(&m.Status.Conditions, tenancyv1.InvitationExpiredCondition)
			return ctrl.Result{}, nil
		case db.InvitationExpired:
			m.Status.InviteSecretName = name
			setCondition(m, tenancyv1.InvitationExpiredCondition, metav1.ConditionTrue, "Expired",
				fmt.Sprintf("The invitation expired at %s; change the annotation %s to send a new one",
					expires.UTC().Format(time.RFC3339), tenancyv1.ReinviteAnnotation))
			return ctrl.Result{}, nil
		}
	}
	meta.RemoveStatusCondition(&m.Status.Conditions, tenancyv1.InvitationExpiredCondition)
	if err := r.waitForAdminsToLoseAccess(ctx, m, name); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.issueInvitation(ctx, s, secret, found)
}

// waitForAdminsToLoseAccess holds back an Owner's invitation while the Admin Role still lists
// its Secret (it did while the invitee was below Owner): Admins must never read an Owner's token.
// The old invitation is voided meanwhile; the Organization controller updates the Role.
func (r *MembershipReconciler) waitForAdminsToLoseAccess(ctx context.Context, m *tenancyv1.Membership, secretName string) error {
	if m.RoleOrDefault() != tenancyv1.RoleOwner {
		return nil
	}
	adminRole := &rbacv1.Role{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: AdminRoleName}, adminRole)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading role %s: %w", AdminRoleName, err)
	}
	if !slices.ContainsFunc(adminRole.Rules, func(rule rbacv1.PolicyRule) bool { return slices.Contains(rule.ResourceNames, secretName) }) {
		return nil
	}
	if err := r.Store.VoidInvitations(ctx, m.Status.ID); err != nil {
		return err
	}
	return waiting("AdminAccessRevoking",
		"Waiting for Admins to lose read access to Secret %s before issuing an Owner's invitation into it", secretName)
}

// invitationState says whether the Secret holds a live invitation for the membership as it is
// now: issued for its current role (a promotion must not keep a token an Admin could read), its
// current reinvite annotation and the current public URL. A cached Secret that fails the check is
// read again from the API server before a new invitation replaces it: the cache may lag behind
// the previous reconcile's write.
func (r *MembershipReconciler) invitationState(ctx context.Context, m *tenancyv1.Membership, cached *corev1.Secret) (db.InvitationState, time.Time, error) {
	check := func(secret *corev1.Secret) (db.InvitationState, time.Time, error) {
		if secret.Annotations[tenancyv1.ReinviteAnnotation] != m.Annotations[tenancyv1.ReinviteAnnotation] ||
			secret.Annotations[invitedRoleAnnotation] != string(m.RoleOrDefault()) {
			return db.InvitationUnknown, time.Time{}, nil
		}
		hash, ok := r.liveTokenHash(m, secret)
		if !ok {
			return db.InvitationUnknown, time.Time{}, nil
		}
		return r.Store.CheckInvitation(ctx, m.Status.ID, hash)
	}
	state, expires, err := check(cached)
	if err != nil || state != db.InvitationUnknown {
		return state, expires, err
	}
	fresh := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(cached), fresh); err != nil {
		return db.InvitationUnknown, time.Time{}, client.IgnoreNotFound(err)
	}
	if fresh.ResourceVersion == cached.ResourceVersion {
		return state, expires, nil
	}
	return check(fresh)
}

// deliveryOf is how m's invitation is delivered: spec.invitation.delivery, else Email when the
// operator sends mail.
func (r *MembershipReconciler) deliveryOf(m *tenancyv1.Membership) tenancyv1.InvitationDelivery {
	if m.Spec.Invitation != nil && m.Spec.Invitation.Delivery != "" {
		return m.Spec.Invitation.Delivery
	}
	if r.Mail != nil {
		return tenancyv1.InvitationByEmail
	}
	return tenancyv1.InvitationByLink
}

// liveTokenHash is the hash of the token the Secret stands for, if the Secret was written for the
// membership's current delivery (and, for links, the current public URL).
func (r *MembershipReconciler) liveTokenHash(m *tenancyv1.Membership, secret *corev1.Secret) ([]byte, bool) {
	if r.deliveryOf(m) == tenancyv1.InvitationByEmail {
		hash, err := hex.DecodeString(string(secret.Data[tenancyv1.InvitationTokenHashKey]))
		return hash, err == nil && string(secret.Data[tenancyv1.InvitationDeliveryKey]) == string(tenancyv1.InvitationByEmail) &&
			string(secret.Data[tenancyv1.InvitationSentToKey]) == db.NormalizeEmail(m.Spec.User)
	}
	// Secrets written before delivery existed hold a link and no delivery key.
	delivery := string(secret.Data[tenancyv1.InvitationDeliveryKey])
	return hashToken(secret.Data[tenancyv1.InvitationTokenKey]),
		(delivery == "" || delivery == string(tenancyv1.InvitationByLink)) &&
			bytes.HasPrefix(secret.Data[tenancyv1.InvitationURLKey], []byte(r.invitationURL("")))
}

// invitedRoleAnnotation on an invitation Secret records the role the invitation was issued for.
const invitedRoleAnnotation = "tenancy.dev/invited-role"

func (r *MembershipReconciler) issueInvitation(ctx context.Context, s *membershipScope, secret *corev1.Secret, exists bool) error {
	m := s.membership
	token, err := newInvitationToken()
	if err != nil {
		return err
	}
	expires := time.Now().Add(r.InvitationTTL).Truncate(time.Second)
	hash := hashToken([]byte(token))
	delivery := r.deliveryOf(m)
	data := map[string][]byte{tenancyv1.InvitationDeliveryKey: []byte(delivery)}
	var emailed *mail.Message
	if delivery == tenancyv1.InvitationByEmail {
		to := db.NormalizeEmail(m.Spec.User)
		msg, err := r.Mail.Templates.Render(mail.Invitation, to, mail.Data{
			Link: r.invitationURL(token), ExpiresAt: expires, Organization: orgTitle(s.org), Project: m.Spec.Project,
			Role: string(m.RoleOrDefault()), InvitedBy: m.Annotations[tenancyv1.LastChangedByAnnotation],
		})
		if err != nil {
			return err
		}
		emailed = &msg
		data[tenancyv1.InvitationSentToKey] = []byte(to)
		data[tenancyv1.InvitationTokenHashKey] = []byte(hex.EncodeToString(hash))
	} else {
		data[tenancyv1.InvitationTokenKey] = []byte(token)
		data[tenancyv1.InvitationURLKey] = []byte(r.invitationURL(token))
	}
	// The Secret first, then the record that makes its token work (and, for Email, the mail, in
	// the same transaction): a Secret somebody else made under our name stops us before anything
	// is recorded, and a token written without its record (the database failed) works for nobody
	// and is replaced by the next reconcile.
	err = writeOwnedSecret(ctx, r.Client, r.APIReader, m, secret, exists, m.Name+"-invite",
		map[string]string{
			invitedRoleAnnotation:        string(m.RoleOrDefault()),
			tenancyv1.ReinviteAnnotation: m.Annotations[tenancyv1.ReinviteAnnotation],
			"tenancy.dev/expires-at":     expires.UTC().Format(time.RFC3339),
		}, data)
	if err != nil {
		return err
	}
	if err := r.Store.ReplaceInvitation(ctx, m.Status.ID, s.org.Status.ID, hash, expires, actorOf(m, "membership"), emailed); err != nil {
		return err
	}
	if emailed != nil {
		r.Mail.Dispatcher.Poke()
	}
	// A membership's first invitation is told by its status (state Invited, inviteSecretName); one
	// that replaces an earlier invitation gets an Event.
	if exists || m.Status.InviteSecretName != "" {
		where := "in Secret " + secret.Name
		if emailed != nil {
			where = "mailed to " + emailed.To
		}
		r.Recorder.Eventf(m, secret, corev1.EventTypeNormal, "InvitationIssued", "IssueInvitation",
			"Issued a new invitation, valid until %s, %s; the previous one no longer works", expires.UTC().Format(time.RFC3339), where)
	}
	m.Status.InviteSecretName = secret.Name
	return nil
}

// orgTitle is how mail names an organization: its display name, else its name.
func orgTitle(org *tenancyv1.Organization) string {
	if org.Spec.DisplayName != "" {
		return org.Spec.DisplayName
	}
	return org.Name
}

func (r *MembershipReconciler) invitationURL(token string) string {
	return r.PublicURL + "/invite?token=" + url.QueryEscape(token)
}

// cleanUp removes the membership's rows (and the user's refresh tokens for the organization when
// it was their last membership there) and its invitation Secret.
func (r *MembershipReconciler) cleanUp(ctx context.Context, m *tenancyv1.Membership) error {
	if err := r.Store.DeleteMembership(ctx, string(m.UID), m.Name, actorOf(m, "membership")); err != nil {
		return err
	}
	return deleteOwnedSecret(ctx, r.Client, m, m.Name+"-invite")
}

// SetupWithManager registers the controller; tenant.Setup must have run.
func (r *MembershipReconciler) SetupWithManager(mgr ctrl.Manager) error {
	wakeMemberships := requestsForScopedObjects(r.Client, func() client.ObjectList { return &tenancyv1.MembershipList{} })
	return ctrl.NewControllerManagedBy(mgr).
		For(&tenancyv1.Membership{}, builder.WithPredicates(specChanged)).
		Owns(&corev1.Secret{}).
		Watches(&tenancyv1.Organization{}, handler.EnqueueRequestsFromMapFunc(wakeMemberships),
			builder.WithPredicates(organizationBindingChanged)).
		Watches(&tenancyv1.Project{}, handler.EnqueueRequestsFromMapFunc(wakeMemberships),
			builder.WithPredicates(rowIDChanged)).
		WithOptions(r.Options).
		Named("membership").
		Complete(r)
}

// newInvitationToken returns 256 random bits, base64url-encoded.
func newInvitationToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating an invitation token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashToken is how invitation tokens are stored: SHA-256 of the token string.
func hashToken(token []byte) []byte {
	sum := sha256.Sum256(token)
	return sum[:]
}
