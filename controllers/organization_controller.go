package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/internal/db"
	"github.com/tenancy-dev/tenancy/internal/tenant"
)

// OrganizationStore is the database side of the Organization controller.
type OrganizationStore interface {
	UpsertOrganization(ctx context.Context, org db.Organization, actor db.Actor) (db.UpsertResult, error)
	DeleteOrganization(ctx context.Context, uid, name string, actor db.Actor) error
	OrganizationCounts(ctx context.Context, id string) (db.OrganizationCounts, error)
	PurgeOrganizationData(ctx context.Context, uid, name string, tables []db.TenantTable, actor db.Actor) error
}

// OrganizationReconciler binds each Organization to its namespace and keeps its row.
type OrganizationReconciler struct {
	client.Client
	// APIReader reads Roles and RoleBindings the cache does not hold (those without our labels).
	APIReader client.Reader
	Store     OrganizationStore
	Recorder  events.EventRecorder
	// ResyncPeriod is how often a Ready organization is reconciled again, restoring rows changed
	// by hand.
	ResyncPeriod time.Duration
	// UsernamePrefix turns a member's email into their Kubernetes username.
	UsernamePrefix string
	// OperatorNamespace is the operator's own namespace, which no organization may claim.
	OperatorNamespace string
	// Options tune concurrency and retry backoff.
	Options controller.Options
	// ownStatus holds its last status writes until the cache shows them.
	ownStatus ownStatusWrites
	// secretAccessChecked holds, per Organization UID, when the RoleBindings of its adopted
	// namespace were last checked for foreign access to Secrets.
	secretAccessChecked sync.Map
}

type organizationScope struct {
	org *tenancyv1.Organization
	// adopted says that the organization's namespace is one the operator did not create;
	// justAdopted that this reconcile labelled it.
	adopted, justAdopted bool
}

// +kubebuilder:rbac:groups=tenancy.dev,resources=organizations,verbs=get;list;watch;update;patch
// The Roles the operator writes grant these verbs, and RBAC lets it grant only what it holds
// (no escalate or bind).
// +kubebuilder:rbac:groups=tenancy.dev,resources=projects;memberships;apikeys;oauthclients,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=tenancy.dev,resources=organizations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=tenancy.dev,resources=organizations/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete;deletecollection
// The Owner and Viewer ClusterRoles, kept like the namespaces' Roles; the two names alone may be
// changed.
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=update;patch,resourceNames=tenancy-owner;tenancy-viewer

// Reconcile brings one Organization's namespace, RBAC and rows in line with its spec.
func (r *OrganizationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return lifecycle[*tenancyv1.Organization]{
		client:    r.Client,
		ownWrites: &r.ownStatus,
		resync:    r.ResyncPeriod,
		newObject: func() *tenancyv1.Organization { return &tenancyv1.Organization{} },
		reconcileNormal: func(ctx context.Context, org *tenancyv1.Organization) (ctrl.Result, error) {
			return runPhases(ctx, &organizationScope{org: org},
				r.reconcileNamespace,
				r.reconcileRBAC,
				r.reconcileSecretAccess,
				r.reconcileRow,
				r.reconcileCounts,
			)
		},
		cleanUp: r.cleanUp,
	}.reconcile(ctx, req)
}

// reconcileNamespace creates the organization's namespace, or adopts an existing one, and labels it.
func (r *OrganizationReconciler) reconcileNamespace(ctx context.Context, s *organizationScope) (ctrl.Result, error) {
	org := s.org
	name := org.NamespaceName()
	if tenant.ReservedNamespace(name, r.OperatorNamespace) {
		return ctrl.Result{}, stalled(tenancyv1.NamespaceReservedReason,
			"Namespace %s is reserved for the cluster or the operator and cannot hold an organization; choose another spec.namespace", name)
	}
	ns := &corev1.Namespace{}
	err := r.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, r.createNamespace(ctx, org, name)
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("getting namespace %s: %w", name, err)
	}
	if !ns.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, waiting("NamespaceTerminating",
			"Namespace %s is being deleted; it will be created again once it is gone", name)
	}

	switch owner := ns.Labels[tenancyv1.OrganizationLabel]; owner {
	case org.Name:
		s.adopted = ns.Annotations[tenancyv1.CreatedNamespaceAnnotation] != "true"
	case "":
		if err := r.adoptNamespace(ctx, s, ns); err != nil {
			return ctrl.Result{}, err
		}
	default:
		other := &tenancyv1.Organization{}
		err := r.Get(ctx, client.ObjectKey{Name: owner}, other)
		if err == nil {
			return ctrl.Result{}, stalled(tenancyv1.NamespaceConflictReason,
				"Namespace %s is already bound to organization %s; choose another spec.namespace", name, owner)
		}
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("getting organization %s: %w", owner, err)
		}
		// The label names an organization that no longer exists: nobody else holds the namespace.
		if err := r.adoptNamespace(ctx, s, ns); err != nil {
			return ctrl.Result{}, err
		}
	}
	org.Status.Namespace = name
	return ctrl.Result{}, nil
}

func (r *OrganizationReconciler) createNamespace(ctx context.Context, org *tenancyv1.Organization, name string) error {
	ns := &corev1.Namespace{}
	ns.Name = name
	ns.Labels = map[string]string{tenancyv1.OrganizationLabel: org.Name}
	ns.Annotations = map[string]string{tenancyv1.CreatedNamespaceAnnotation: "true"}
	if err := controllerutil.SetOwnerReference(org, ns, r.Scheme()); err != nil {
		return fmt.Errorf("setting the owner of namespace %s: %w", name, err)
	}
	if err := r.Create(ctx, ns); err != nil {
		// AlreadyExists means the cache lags; the retry sees the namespace and adopts or refuses it.
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	r.Recorder.Eventf(org, ns, corev1.EventTypeNormal, "NamespaceCreated", "CreateNamespace", "Created namespace %s", name)
	org.Status.Namespace = name
	return nil
}

// adoptNamespace labels an existing namespace for org. The validating webhook lets only a
// platform admin create an Organization for a namespace that exists; a namespace that someone
// else created after the Organization, before the operator could create it, was approved by
// nobody, and is refused. creationTimestamp counts whole seconds, so a namespace applied in the
// same second as its Organization (a tenant's directory in one `kubectl apply`) is adopted. The
// optimistic lock makes two organizations racing for one namespace end with exactly one owner.
func (r *OrganizationReconciler) adoptNamespace(ctx context.Context, s *organizationScope, ns *corev1.Namespace) error {
	org := s.org
	if ns.CreationTimestamp.After(org.CreationTimestamp.Time) {
		return stalled(tenancyv1.NamespaceAdoptionRefusedReason,
			"Namespace %s was created after this Organization, not by the operator, and only a platform admin may adopt an existing namespace: "+
				"have one delete this Organization and create it again, or delete the namespace", ns.Name)
	}
	before := ns.DeepCopy()
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[tenancyv1.OrganizationLabel] = org.Name
	if err := r.Patch(ctx, ns, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("labelling namespace %s: %w", ns.Name, err)
	}
	r.Recorder.Eventf(org, ns, corev1.EventTypeNormal, "NamespaceAdopted", "AdoptNamespace", "Adopted existing namespace %s", ns.Name)
	s.adopted, s.justAdopted = true, true
	return nil
}

// reconcileRBAC keeps the namespace's Roles and RoleBindings in line with the organization's
// Memberships and APIKeys, so members can use kubectl there as their role allows.
func (r *OrganizationReconciler) reconcileRBAC(ctx context.Context, s *organizationScope) (ctrl.Result, error) {
	ns := s.org.NamespaceName()
	var memberships tenancyv1.MembershipList
	if err := r.List(ctx, &memberships, client.InNamespace(ns)); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing memberships: %w", err)
	}
	// The cache holds only the Secrets the operator labelled.
	var secrets corev1.SecretList
	if err := r.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing secrets: %w", err)
	}
	return ctrl.Result{}, applyRBAC(ctx, r.Client, r.APIReader, s.org, desiredRBAC(ns, r.UsernamePrefix, memberships.Items, secrets.Items))
}

// reconcileSecretAccess reports the RoleBindings of an adopted namespace that the operator did
// not make and that let someone read the namespace's Secrets: they stay with the namespace, and
// its Owners may not know of them. Namespaces the operator created are not checked, and adopted
// ones only when adopted and then once per resync period (the API server holds the RoleBindings,
// the cache only the operator's): an organization is reconciled far more often than that.
func (r *OrganizationReconciler) reconcileSecretAccess(ctx context.Context, s *organizationScope) (ctrl.Result, error) {
	org := s.org
	if !s.adopted {
		meta.RemoveStatusCondition(&org.Status.Conditions, tenancyv1.ForeignSecretAccessCondition)
		return ctrl.Result{}, nil
	}
	if last, ok := r.secretAccessChecked.Load(org.UID); ok && !s.justAdopted && time.Since(last.(time.Time)) < r.ResyncPeriod {
		return ctrl.Result{}, nil
	}
	found, err := foreignSecretReaders(ctx, r.APIReader, org)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.secretAccessChecked.Store(org.UID, time.Now())
	if len(found) == 0 {
		meta.RemoveStatusCondition(&org.Status.Conditions, tenancyv1.ForeignSecretAccessCondition)
		return ctrl.Result{}, nil
	}
	message := secretReadersMessage(org.NamespaceName(), found)
	// One Event when they are found or change, not one per resync.
	if c := meta.FindStatusCondition(org.Status.Conditions, tenancyv1.ForeignSecretAccessCondition); c == nil || c.Message != message {
		r.Recorder.Eventf(org, nil, corev1.EventTypeWarning, "ForeignSecretAccess", "CheckRoleBindings", "%s",
			secretReadersNote(org.NamespaceName(), found))
	}
	setCondition(org, tenancyv1.ForeignSecretAccessCondition, metav1.ConditionTrue, tenancyv1.ForeignRoleBindingsReason, message)
	return ctrl.Result{}, nil
}

// operatorBindingNames are the RoleBindings the operator keeps in an organization namespace.
var operatorBindingNames = []string{bindingName(OwnerRoleName), bindingName(AdminRoleName), bindingName(ViewerRoleName)}

// foreignSecretReaders lists, by name, the RoleBindings in org's namespace that the operator did
// not make and whose Role or ClusterRole lets its subjects get, list or watch Secrets. It reads
// the API server, where a binding to a role that does not exist (yet) grants nothing.
func foreignSecretReaders(ctx context.Context, c client.Reader, org *tenancyv1.Organization) ([]rbacv1.RoleBinding, error) {
	ns := org.NamespaceName()
	var bindings rbacv1.RoleBindingList
	if err := c.List(ctx, &bindings, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing role bindings: %w", err)
	}
	readsByRole := map[rbacv1.RoleRef]bool{}
	var found []rbacv1.RoleBinding
	for _, b := range bindings.Items {
		if slices.Contains(operatorBindingNames, b.Name) && isManaged(&b, org) {
			continue
		}
		reads, known := readsByRole[b.RoleRef]
		if !known {
			rules, err := rulesOf(ctx, c, ns, b.RoleRef)
			if err != nil {
				return nil, err
			}
			reads = slices.ContainsFunc(rules, readsSecrets)
			readsByRole[b.RoleRef] = reads
		}
		if reads {
			found = append(found, b)
		}
	}
	slices.SortFunc(found, func(a, b rbacv1.RoleBinding) int { return strings.Compare(a.Name, b.Name) })
	return found, nil
}

// rulesOf reads the rules of the Role (in ns) or ClusterRole that ref names; none when it does
// not exist.
func rulesOf(ctx context.Context, c client.Reader, ns string, ref rbacv1.RoleRef) ([]rbacv1.PolicyRule, error) {
	switch ref.Kind {
	case "Role":
		role := &rbacv1.Role{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, role); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("getting role %s: %w", ref.Name, err)
		}
		return role.Rules, nil
	case "ClusterRole":
		role := &rbacv1.ClusterRole{}
		if err := c.Get(ctx, client.ObjectKey{Name: ref.Name}, role); client.IgnoreNotFound(err) != nil {
			return nil, fmt.Errorf("getting cluster role %s: %w", ref.Name, err)
		}
		return role.Rules, nil
	}
	return nil, nil
}

// readsSecrets reports whether rule grants get, list or watch on Secrets, by name or by wildcard.
func readsSecrets(rule rbacv1.PolicyRule) bool {
	anyOf := func(have []string, want ...string) bool {
		return slices.ContainsFunc(have, func(h string) bool { return slices.Contains(want, h) })
	}
	return anyOf(rule.APIGroups, "", rbacv1.APIGroupAll) &&
		anyOf(rule.Resources, "secrets", rbacv1.ResourceAll) &&
		anyOf(rule.Verbs, "get", "list", "watch", rbacv1.VerbAll)
}

// secretReadersMessage names the bindings, their roles and subjects, for the condition.
func secretReadersMessage(ns string, found []rbacv1.RoleBinding) string {
	const most = 10
	described := make([]string, 0, most)
	for _, b := range found[:min(len(found), most)] {
		described = append(described, fmt.Sprintf("%s (%s %s, for %s)", b.Name, b.RoleRef.Kind, b.RoleRef.Name, subjectsOf(b.Subjects)))
	}
	return fmt.Sprintf("RoleBindings that the operator did not make let others read the Secrets of namespace %s: %s%s; delete those that are not meant to stay",
		ns, strings.Join(described, "; "), andMore(len(found), most))
}

// secretReadersNote names the first bindings only: an Event's note holds at most 1 kB.
func secretReadersNote(ns string, found []rbacv1.RoleBinding) string {
	const most = 3
	names := make([]string, 0, most)
	for _, b := range found[:min(len(found), most)] {
		names = append(names, b.Name)
	}
	return fmt.Sprintf("RoleBindings that the operator did not make let others read the Secrets of namespace %s: %s%s; see the condition %s",
		ns, strings.Join(names, ", "), andMore(len(found), most), tenancyv1.ForeignSecretAccessCondition)
}

func subjectsOf(subjects []rbacv1.Subject) string {
	if len(subjects) == 0 {
		return "no subject"
	}
	const most = 5
	names := make([]string, 0, most)
	for _, s := range subjects[:min(len(subjects), most)] {
		if s.Namespace != "" {
			names = append(names, fmt.Sprintf("%s %s/%s", s.Kind, s.Namespace, s.Name))
		} else {
			names = append(names, s.Kind+" "+s.Name)
		}
	}
	return strings.Join(names, ", ") + andMore(len(subjects), most)
}

func andMore(n, shown int) string {
	if n <= shown {
		return ""
	}
	return fmt.Sprintf(" and %d more", n-shown)
}

// reconcileRow upserts the organization's row; a row deleted or changed by hand comes back. A new
// row gets the id that tenancy.dev/row-id asks for, if any.
func (r *OrganizationReconciler) reconcileRow(ctx context.Context, s *organizationScope) (ctrl.Result, error) {
	org := s.org
	tier := org.Spec.Tier
	if tier == "" {
		tier = tenancyv1.TierFree
	}
	id, err := wantedRowID(org, org.Status.ID)
	if err != nil {
		return ctrl.Result{}, err
	}
	res, err := r.Store.UpsertOrganization(ctx, db.Organization{
		ID:          id,
		UID:         string(org.UID),
		Name:        org.Name,
		DisplayName: org.Spec.DisplayName,
		Tier:        string(tier),
		Namespace:   org.NamespaceName(),
		RequireMFA:  org.Spec.RequireMFA,
	}, actorOf(org, "organization"))
	if err != nil {
		return ctrl.Result{}, rowIDInUse(err)
	}
	reportRowChange(r.Recorder, org, org.Status.ID, res)
	org.Status.ID = res.ID
	return ctrl.Result{}, nil
}

// reconcileCounts shows how many projects and members the organization has.
func (r *OrganizationReconciler) reconcileCounts(ctx context.Context, s *organizationScope) (ctrl.Result, error) {
	counts, err := r.Store.OrganizationCounts(ctx, s.org.Status.ID)
	if err != nil {
		return ctrl.Result{}, err
	}
	s.org.Status.Projects = counts.Projects
	s.org.Status.Members = counts.Members
	return ctrl.Result{}, nil
}

// cleanUp removes the organization's identity rows and releases its namespace: it deletes the
// namespace when the operator created it, without waiting for it to terminate.
func (r *OrganizationReconciler) cleanUp(ctx context.Context, org *tenancyv1.Organization) error {
	r.secretAccessChecked.Delete(org.UID)
	if org.Spec.DeletionPolicy == tenancyv1.DeletionPolicyDelete {
		// The tenant's data goes first: the purge finds its rows by the organization's id.
		var list tenancyv1.TenantTableList
		if err := r.List(ctx, &list); err != nil {
			return fmt.Errorf("listing tenant tables: %w", err)
		}
		tables := make([]db.TenantTable, 0, len(list.Items))
		for i := range list.Items {
			tables = append(tables, tableOf(&list.Items[i]))
		}
		if err := r.Store.PurgeOrganizationData(ctx, string(org.UID), org.Name, tables, actorOf(org, "organization")); err != nil {
			return err
		}
	}
	if err := r.Store.DeleteOrganization(ctx, string(org.UID), org.Name, actorOf(org, "organization")); err != nil {
		return err
	}
	if err := r.releaseNamespace(ctx, org); err != nil {
		return err
	}
	r.Recorder.Eventf(org, nil, corev1.EventTypeNormal, "Deleted", "Delete", "Removed the organization's rows")
	return nil
}

func (r *OrganizationReconciler) releaseNamespace(ctx context.Context, org *tenancyv1.Organization) error {
	ns := &corev1.Namespace{}
	err := r.Get(ctx, client.ObjectKey{Name: org.NamespaceName()}, ns)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting namespace %s: %w", org.NamespaceName(), err)
	}
	if ns.Labels[tenancyv1.OrganizationLabel] != org.Name {
		return nil // never ours, e.g. after a namespace conflict
	}
	// Delete what grants access explicitly: the namespace may take long to go (or, without a
	// namespace controller, never).
	if err := deleteRBAC(ctx, r.Client, org, ns.Name); err != nil {
		return err
	}
	if ns.Annotations[tenancyv1.CreatedNamespaceAnnotation] == "true" {
		if !ns.DeletionTimestamp.IsZero() {
			return nil
		}
		if err := r.Delete(ctx, ns, client.PropagationPolicy("Background")); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting namespace %s: %w", ns.Name, err)
		}
		return nil
	}
	before := ns.DeepCopy()
	delete(ns.Labels, tenancyv1.OrganizationLabel)
	if err := r.Patch(ctx, ns, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("unlabelling namespace %s: %w", ns.Name, err)
	}
	return nil
}

// SetupWithManager registers the controller; tenant.Setup must have run.
func (r *OrganizationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&tenancyv1.Organization{}, builder.WithPredicates(specChanged)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.organizationsForNamespace),
			builder.WithPredicates(namespaceBindingChanged)).
		Watches(&tenancyv1.Project{}, enqueueAfter(organizationBatchDelay, requestsForOrganizationsNaming(r.Client)),
			builder.WithPredicates(rowIDChanged)).
		Watches(&tenancyv1.Membership{}, enqueueAfter(organizationBatchDelay, requestsForOrganizationsNaming(r.Client)),
			builder.WithPredicates(predicate.Or(rowIDChanged, specChanged))).
		Watches(&corev1.Secret{}, enqueueAfter(organizationBatchDelay, requestsForOrganizationsNaming(r.Client)),
			builder.WithPredicates(createdOrDeleted)).
		WithOptions(r.Options).
		Named("organization").
		Complete(r)
}

// organizationBatchDelay is how long an Organization waits after a change to its projects,
// members or Secrets before it recounts them and updates its RBAC: a tenant applied in one pass
// changes those a few dozen times within a second, and each change would otherwise cost a
// reconcile, a status write and Role and RoleBinding updates.
const organizationBatchDelay = time.Second

// enqueueAfter maps events to requests like handler.EnqueueRequestsFromMapFunc, but queues them
// after delay; the queue keeps one entry per request, so the events within delay make one reconcile.
// They go in with low priority: an Organization seen for the first time, which its projects,
// members and keys wait for, comes before recounting one that is already Ready.
func enqueueAfter(delay time.Duration, toRequests handler.MapFunc) handler.EventHandler {
	add := func(ctx context.Context, obj client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, req := range toRequests(ctx, obj) {
			if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
				pq.AddWithOpts(priorityqueue.AddOpts{After: delay, Priority: new(handler.LowPriority)}, req)
				continue
			}
			q.AddAfter(req, delay)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
	}
}

// organizationsForNamespace wakes the organization a namespace is labelled for and every
// organization that names it.
func (r *OrganizationReconciler) organizationsForNamespace(ctx context.Context, obj client.Object) []ctrl.Request {
	requests := requestsForOrganizationsNaming(r.Client)(ctx, obj)
	if owner := obj.GetLabels()[tenancyv1.OrganizationLabel]; owner != "" {
		requests = append(requests, ctrl.Request{NamespacedName: client.ObjectKey{Name: owner}})
	}
	return requests
}

// namespaceBindingChanged passes namespace events that can change an organization's binding.
var namespaceBindingChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetLabels()[tenancyv1.OrganizationLabel] != e.ObjectNew.GetLabels()[tenancyv1.OrganizationLabel] ||
			e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
	},
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// createdOrDeleted passes only creations and deletions.
var createdOrDeleted = predicate.Funcs{
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// rowIDChanged passes creations, deletions and updates that gave an object its row.
var rowIDChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return statusID(e.ObjectOld) != statusID(e.ObjectNew)
	},
	GenericFunc: func(event.GenericEvent) bool { return false },
}

func statusID(obj client.Object) string {
	switch o := obj.(type) {
	case *tenancyv1.Project:
		return o.Status.ID
	case *tenancyv1.Membership:
		return o.Status.ID
	}
	return ""
}
