package v1alpha1

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Role is a tenancy role. The ladder is Viewer < Member < Admin < Owner; the spellings are the
// same in custom resources, database rows and token claims.
// +kubebuilder:validation:Enum=Owner;Admin;Member;Viewer
type Role string

// The tenancy roles, lowest first.
const (
	RoleViewer Role = "Viewer"
	RoleMember Role = "Member"
	RoleAdmin  Role = "Admin"
	RoleOwner  Role = "Owner"
)

// roleLadder is the one ordering of the roles; pkg/tenancy and the database's tenancy.role enum
// must list the same spellings in the same order (roles_unit_test.go checks both).
var roleLadder = [...]Role{RoleViewer, RoleMember, RoleAdmin, RoleOwner}

// Roles returns the roles, lowest first.
func Roles() []Role { return slices.Clone(roleLadder[:]) }

// Rank orders the roles: Viewer 1, Member 2, Admin 3, Owner 4, and 0 for no role.
func (r Role) Rank() int { return slices.Index(roleLadder[:], r) + 1 }

// AtLeast reports whether r is min or above it on the ladder.
func (r Role) AtLeast(min Role) bool { return r.Rank() >= min.Rank() }

const (
	// Finalizer holds every tenancy object until its database rows are cleaned up.
	Finalizer = "tenancy.dev/finalizer"

	// OrganizationLabel binds a namespace to the Organization of that name.
	OrganizationLabel = "tenancy.dev/organization"

	// CreatedNamespaceAnnotation marks a namespace the operator created (rather than adopted), so
	// that deleting its Organization deletes it too.
	CreatedNamespaceAnnotation = "tenancy.dev/created-by-operator"

	// ReinviteAnnotation on a Membership: changing its value issues a fresh invitation.
	ReinviteAnnotation = "tenancy.dev/reinvite"

	// ManagedByLabel marks the Secrets the operator writes (value ManagedByValue); the manager
	// caches only those.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of ManagedByLabel on the operator's Secrets.
	ManagedByValue = "tenancy"

	// LastChangedByAnnotation names the user whose request last created or changed an object.
	LastChangedByAnnotation = "tenancy.dev/last-changed-by"
	// RowIDAnnotation on an Organization or a Project is the UUID its row in tenancy.organizations
	// or tenancy.projects gets as id when the row is first created, so that an imported tenant
	// keeps the ids its application's rows already carry. Choosing an id chooses which existing
	// rows of the TenantTables the object reaches, so only a named platform admin may set or change
	// it (the validating webhook), and it is immutable once the object has a status.id: a row that
	// has an id keeps it.
	RowIDAnnotation = "tenancy.dev/row-id"
	// DisableRLSOnDeleteAnnotation on a TenantTable, set to "true", turns row-level security off
	// when the TenantTable is deleted; by default the table keeps it, with no policy, and fails
	// closed.
	DisableRLSOnDeleteAnnotation = "tenancy.dev/disable-rls-on-delete"
)

// Condition types, kstatus-compatible: Ready always present, Reconciling and Stalled only while true.
const (
	ReadyCondition       = "Ready"
	ReconcilingCondition = "Reconciling"
	StalledCondition     = "Stalled"

	// InvitationExpiredCondition is True on a Membership whose invitation expired unused.
	InvitationExpiredCondition = "InvitationExpired"
	// DriftRestoredCondition is True on a TenantTable whose policies or row-level security were
	// changed outside the operator and put back; its message says what and when. It goes with
	// the next change of the spec.
	DriftRestoredCondition = "DriftRestored"
	// ForeignSecretAccessCondition is True on an Organization whose adopted namespace holds
	// RoleBindings the operator did not make that let their subjects read its Secrets; its message
	// names them. It is checked when the namespace is adopted and at every resync, and goes once
	// they do. It never makes the Organization not Ready.
	ForeignSecretAccessCondition = "ForeignSecretAccess"
)

// Condition reasons.
const (
	// ReconciledReason: rows, policies, Secrets and RBAC are in place.
	ReconciledReason = "Reconciled"
	// ProgressingReason: the object changed and the controller is acting on it.
	ProgressingReason = "Progressing"
	// DatabaseUnavailableReason: PostgreSQL could not be reached; the controller retries.
	DatabaseUnavailableReason = "DatabaseUnavailable"
	// ProjectNotFoundReason: spec.project names no Project in the object's namespace.
	ProjectNotFoundReason = "ProjectNotFound"
	// ProjectNotReadyReason: the Project named by spec.project has no database row yet.
	ProjectNotReadyReason = "ProjectNotReady"
	// DuplicateMembershipReason: another Membership gives the same user a role in the same scope.
	DuplicateMembershipReason = "DuplicateMembership"
	// SecretConflictReason: a Secret of the wanted name exists and the operator did not create it.
	SecretConflictReason = "SecretConflict"
	// DatabaseErrorReason: PostgreSQL answered with an error the controller did not expect.
	DatabaseErrorReason = "DatabaseError"
	// NamespaceConflictReason: the namespace is already bound to another organization.
	NamespaceConflictReason = "NamespaceConflict"
	// NamespaceAdoptionRefusedReason: the namespace exists, the operator did not create it, and it
	// was created after the Organization, so nobody decided that the organization adopts it.
	NamespaceAdoptionRefusedReason = "NamespaceAdoptionRefused"
	// ForeignRoleBindingsReason: RoleBindings that the operator did not make grant read access to
	// the Secrets of the organization's namespace.
	ForeignRoleBindingsReason = "ForeignRoleBindings"
	// NamespaceReservedReason: the namespace belongs to the cluster or the operator.
	NamespaceReservedReason = "NamespaceReserved"
	// SchemaReservedReason: a TenantTable names a table in the operator's schema or PostgreSQL's.
	SchemaReservedReason = "SchemaReserved"
	// NamespaceNotBoundReason: the object lives in a namespace that no organization owns.
	NamespaceNotBoundReason = "NamespaceNotBound"
	// OrganizationNotReadyReason: the owning organization has no database row yet.
	OrganizationNotReadyReason = "OrganizationNotReady"
	// RowIDInUseReason: the row id that tenancy.dev/row-id asks for is already another row's.
	RowIDInUseReason = "RowIDInUse"
	// InvalidRowIDReason: tenancy.dev/row-id is not a UUID (the webhook refuses that, so only an
	// object written while it did not run gets here).
	InvalidRowIDReason = "InvalidRowID"
)

// CommonStatus is embedded in every kind's status.
type CommonStatus struct {
	// observedGeneration is the metadata.generation that the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready always; Reconciling and Stalled only while true (kstatus).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Object is a tenancy custom resource: every kind carries CommonStatus.
// +kubebuilder:object:generate=false
type Object interface {
	client.Object
	// CommonStatusRef returns the object's conditions and observedGeneration for in-place changes.
	CommonStatusRef() *CommonStatus
	// FullStatus returns the kind's whole status by value, so that a reconcile can tell whether
	// it changed anything worth writing.
	FullStatus() any
}

// CommonStatusRef implements Object.
func (o *Organization) CommonStatusRef() *CommonStatus { return &o.Status.CommonStatus }

// CommonStatusRef implements Object.
func (p *Project) CommonStatusRef() *CommonStatus { return &p.Status.CommonStatus }

// CommonStatusRef implements Object.
func (m *Membership) CommonStatusRef() *CommonStatus { return &m.Status.CommonStatus }

// CommonStatusRef implements Object.
func (k *APIKey) CommonStatusRef() *CommonStatus { return &k.Status.CommonStatus }

// CommonStatusRef implements Object.
func (t *TenantTable) CommonStatusRef() *CommonStatus { return &t.Status.CommonStatus }

// CommonStatusRef implements Object.
func (s *AccountSuspension) CommonStatusRef() *CommonStatus { return &s.Status.CommonStatus }

// CommonStatusRef implements Object.
func (c *OAuthClient) CommonStatusRef() *CommonStatus { return &c.Status.CommonStatus }

// FullStatus implements Object.
func (o *Organization) FullStatus() any { return o.Status }

// FullStatus implements Object.
func (p *Project) FullStatus() any { return p.Status }

// FullStatus implements Object.
func (m *Membership) FullStatus() any { return m.Status }

// FullStatus implements Object.
func (k *APIKey) FullStatus() any { return k.Status }

// FullStatus implements Object.
func (t *TenantTable) FullStatus() any { return t.Status }

// FullStatus implements Object.
func (s *AccountSuspension) FullStatus() any { return s.Status }

// FullStatus implements Object.
func (c *OAuthClient) FullStatus() any { return c.Status }

// RoleOrDefault is spec.role, or Member (the CRD's default) when unset.
func (m *Membership) RoleOrDefault() Role {
	if m.Spec.Role == "" {
		return RoleMember
	}
	return m.Spec.Role
}

// ProjectName is spec.project: the Project the membership is scoped to, or "" for the organization.
func (m *Membership) ProjectName() string { return m.Spec.Project }

// ProjectName is spec.project: the Project the key is scoped to, or "" for the organization.
func (k *APIKey) ProjectName() string { return k.Spec.Project }
