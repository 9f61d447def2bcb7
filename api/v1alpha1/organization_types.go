package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Tier sets an organization's quotas.
// +kubebuilder:validation:Enum=Free;Pro;Enterprise
type Tier string

// The organization tiers.
const (
	TierFree       Tier = "Free"
	TierPro        Tier = "Pro"
	TierEnterprise Tier = "Enterprise"
)

// TierLimits are a tier's quotas; 0 means unlimited.
// +kubebuilder:object:generate=false
type TierLimits struct {
	Projects int
	Members  int
	APIKeys  int
}

// Limits returns the tier's quotas: Free 3/10/5, Pro 50/500/100, Enterprise unlimited. An
// unset tier is Free.
func (t Tier) Limits() TierLimits {
	switch t {
	case TierPro:
		return TierLimits{Projects: 50, Members: 500, APIKeys: 100}
	case TierEnterprise:
		return TierLimits{}
	}
	return TierLimits{Projects: 3, Members: 10, APIKeys: 5}
}

// DeletionPolicy says what happens to an organization's rows in TenantTables when it is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

// The deletion policies.
const (
	DeletionPolicyRetain DeletionPolicy = "Retain"
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// OrganizationSpec is the desired state of an Organization.
type OrganizationSpec struct {
	// displayName is the organization's human-readable name.
	// +optional
	// +kubebuilder:validation:MaxLength=200
	DisplayName string `json:"displayName,omitempty"`

	// tier sets the organization's quotas of projects, members and API keys:
	// Free 3/10/5, Pro 50/500/100, Enterprise unlimited.
	// +optional
	// +kubebuilder:default=Free
	Tier Tier `json:"tier,omitempty"`

	// namespace is the Kubernetes namespace that holds the organization's Projects, Memberships and
	// APIKeys. Defaults to the organization's name; immutable. It is created if missing (and deleted
	// with the organization) or adopted if it exists, and labelled tenancy.dev/organization. Only a
	// platform admin may create an Organization for a namespace that exists.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`

	// deletionPolicy decides what happens to the organization's rows in TenantTables when the
	// Organization is deleted: Retain keeps them, Delete purges them. Identity rows (projects,
	// memberships, API keys) are removed either way.
	// +optional
	// +kubebuilder:default=Retain
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// requireMFA makes authd issue tokens for this organization, and show its pages, only to
	// sessions started with a second factor (TOTP or a recovery code). Members without one are
	// told to enrol on their account page.
	// +optional
	RequireMFA bool `json:"requireMFA,omitempty"`
}

// OrganizationStatus is the observed state of an Organization.
type OrganizationStatus struct {
	CommonStatus `json:",inline"`

	// id is the organization's row id in tenancy.organizations.
	// +optional
	ID string `json:"id,omitempty"`

	// namespace is the namespace bound to this organization.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// projects counts the organization's Projects that have a database row.
	// +optional
	Projects int32 `json:"projects"`

	// members counts the distinct users with a membership in the organization.
	// +optional
	Members int32 `json:"members"`
}

// Organization is a tenant: it owns one namespace, its projects, members and API keys.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=org,categories=tenancy
// +kubebuilder:selectablefield:JSONPath=`.spec.namespace`
// +kubebuilder:printcolumn:name="Display Name",type=string,JSONPath=`.spec.displayName`
// +kubebuilder:printcolumn:name="Tier",type=string,JSONPath=`.spec.tier`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.status.namespace`
// +kubebuilder:printcolumn:name="Projects",type=integer,JSONPath=`.status.projects`
// +kubebuilder:printcolumn:name="Members",type=integer,JSONPath=`.status.members`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="(has(self.spec.__namespace__) ? self.spec.__namespace__ : self.metadata.name) == (has(oldSelf.spec.__namespace__) ? oldSelf.spec.__namespace__ : oldSelf.metadata.name)",message="spec.namespace is immutable",fieldPath=".spec.namespace"
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters, as it names the default namespace"
type Organization struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	Spec OrganizationSpec `json:"spec,omitempty"`
	// status is what the operator last observed and did. It starts with observedGeneration -1, so
	// that kstatus (kubectl wait, Argo CD, Flux) reads a new object as InProgress, not Current,
	// until the operator has looked at it.
	// +kubebuilder:default={"observedGeneration":-1}
	Status OrganizationStatus `json:"status,omitempty"`
}

// NamespaceName is the organization's namespace: spec.namespace, or its name when unset.
func (o *Organization) NamespaceName() string {
	if o.Spec.Namespace != "" {
		return o.Spec.Namespace
	}
	return o.Name
}

// +kubebuilder:object:root=true

// OrganizationList is a list of Organizations.
type OrganizationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Organization `json:"items"`
}
