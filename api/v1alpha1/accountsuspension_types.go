package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AccountSuspensionSpec is the desired state of an AccountSuspension.
type AccountSuspensionSpec struct {
	// email is the address of the account to disable; immutable. No account need have it yet:
	// an account created later with this address starts disabled.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Pattern=`^[^@\s]+@[^@\s]+$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.email is immutable; create another AccountSuspension instead"
	Email string `json:"email"`
	// reason says why the account is disabled, for the audit log and whoever reads the object.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
}

// AccountSuspensionStatus is the observed state of an AccountSuspension.
type AccountSuspensionStatus struct {
	CommonStatus `json:",inline"`
	// userID is the database id of the disabled account; empty while no account has the address.
	// +optional
	UserID string `json:"userID,omitempty"`
	// sessionsEnded counts the sessions (refresh tokens) that the suspension ended.
	// +optional
	SessionsEnded int64 `json:"sessionsEnded,omitempty"`
}

// AccountSuspension disables the account with an email address for as long as it exists: the
// person cannot sign in, their sessions end, their tokens stop at the next refresh and at
// introspection, and the database's has_role refuses them at once. Deleting it enables the
// account again. Platform admins create them (kubectl, GitOps, or authd's admin API).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=acs,categories=tenancy
// +kubebuilder:printcolumn:name="Email",type=string,JSONPath=`.spec.email`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.spec.reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AccountSuspension struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AccountSuspensionSpec `json:"spec"`
	// status is what the operator last observed and did. It starts with observedGeneration -1, so
	// that kstatus (kubectl wait, Argo CD, Flux) reads a new object as InProgress, not Current,
	// until the operator has looked at it.
	// +kubebuilder:default={"observedGeneration":-1}
	Status AccountSuspensionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// AccountSuspensionList is a list of AccountSuspensions.
type AccountSuspensionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AccountSuspension `json:"items"`
}
