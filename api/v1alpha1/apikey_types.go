package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// APIKeySpec is the desired state of an APIKey.
// +kubebuilder:validation:XValidation:rule="has(self.project) == has(oldSelf.project) && (!has(self.project) || self.project == oldSelf.project)",message="spec.project is immutable",fieldPath=".project"
type APIKeySpec struct {
	// role is the key's role: Admin, Member or Viewer; API keys are never Owner.
	// +kubebuilder:validation:XValidation:rule="self != 'Owner'",message="API keys are never Owner; use Admin, Member or Viewer"
	Role Role `json:"role"`

	// project, when set, scopes the key to the Project of that name in the same namespace; absent
	// means the whole organization. Immutable.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Project string `json:"project,omitempty"`

	// expiresAt is when the key stops working: at most a year ahead, a year after creation when
	// left out, and never removed once set (it may move, within a year from now).
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// secretName names the Secret (keys apiKey and keyID) that receives the key.
	// Defaults to <name>-apikey.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	SecretName string `json:"secretName,omitempty"`

	// rotation is any string; changing it issues a new key. The previous key keeps working for the
	// rotation grace period.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Rotation string `json:"rotation,omitempty"`
}

// APIKeyStatus is the observed state of an APIKey.
type APIKeyStatus struct {
	CommonStatus `json:",inline"`

	// id is the key's row id in tenancy.api_keys.
	// +optional
	ID string `json:"id,omitempty"`

	// keyID is the public part of the key, usable as an OAuth2 client_id.
	// +optional
	KeyID string `json:"keyID,omitempty"`

	// prefix is the key's recognisable beginning, safe to show.
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// expiresAt is when the current key stops working.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// rotatedAt is when the current key was issued.
	// +optional
	RotatedAt *metav1.Time `json:"rotatedAt,omitempty"`
}

// APIKey is a machine credential for an organization or one of its projects.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=ak,categories=tenancy
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Project",type=string,JSONPath=`.spec.project`
// +kubebuilder:printcolumn:name="Key ID",type=string,JSONPath=`.status.keyID`
// +kubebuilder:printcolumn:name="Expires",type=date,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type APIKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec APIKeySpec `json:"spec"`
	// status is what the operator last observed and did. It starts with observedGeneration -1, so
	// that kstatus (kubectl wait, Argo CD, Flux) reads a new object as InProgress, not Current,
	// until the operator has looked at it.
	// +kubebuilder:default={"observedGeneration":-1}
	Status APIKeyStatus `json:"status,omitempty"`
}

// SecretNameOrDefault is spec.secretName, or <name>-apikey when unset.
func (k *APIKey) SecretNameOrDefault() string {
	if k.Spec.SecretName != "" {
		return k.Spec.SecretName
	}
	return k.Name + "-apikey"
}

// +kubebuilder:object:root=true

// APIKeyList is a list of APIKeys.
type APIKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIKey `json:"items"`
}
