package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// MembershipState says whether the member has accepted the invitation.
// +kubebuilder:validation:Enum=Invited;Active
type MembershipState string

// The membership states.
const (
	MembershipInvited MembershipState = "Invited"
	MembershipActive  MembershipState = "Active"
)

// EmailVerifiedAnnotation on a Membership, set to "true" by a platform admin, vouches that the
// member's email belongs to the person who holds the account: the user becomes verified, and a
// verified user's memberships are Active without their own invitation. The validating webhook
// lets only platform admins set or change it.
const EmailVerifiedAnnotation = "tenancy.dev/email-verified"

// MembershipSpec is the desired state of a Membership.
// +kubebuilder:validation:XValidation:rule="has(self.project) == has(oldSelf.project) && (!has(self.project) || self.project == oldSelf.project)",message="spec.project is immutable",fieldPath=".project"
type MembershipSpec struct {
	// user is the member's email address; immutable. It is trimmed and lower-cased on admission.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Pattern=`^\s*[^@\s]+@[^@\s]+\s*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.user is immutable"
	User string `json:"user"`

	// role is the member's role in the organization, or in the project when spec.project is set.
	// +optional
	// +kubebuilder:default=Member
	Role Role `json:"role,omitempty"`

	// project, when set, scopes the membership to the Project of that name in the same namespace;
	// absent means the whole organization. Immutable.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Project string `json:"project,omitempty"`

	// invitation says how the invitation reaches the user while the membership is Invited.
	// +optional
	Invitation *InvitationSpec `json:"invitation,omitempty"`
}

// InvitationDelivery is how an invitation's link reaches the invited user.
// +kubebuilder:validation:Enum=Email;Link
type InvitationDelivery string

const (
	// InvitationByEmail mails the link to spec.user; the Secret <membership>-invite then holds
	// no usable token, and accepting proves the user's address.
	InvitationByEmail InvitationDelivery = "Email"
	// InvitationByLink writes the link into the Secret <membership>-invite, for whoever may read
	// it to pass on.
	InvitationByLink InvitationDelivery = "Link"
)

// InvitationSpec chooses how an invitation is delivered.
type InvitationSpec struct {
	// delivery is Email (the link is mailed to spec.user) or Link (the link is written into the
	// Secret <membership>-invite). Unset, it is Email when the operator sends mail (--smtp-url),
	// Link otherwise.
	// +optional
	Delivery InvitationDelivery `json:"delivery,omitempty"`
}

// MembershipStatus is the observed state of a Membership.
type MembershipStatus struct {
	CommonStatus `json:",inline"`

	// id is the membership's row id in tenancy.memberships.
	// +optional
	ID string `json:"id,omitempty"`

	// userID is the member's row id in tenancy.users.
	// +optional
	UserID string `json:"userID,omitempty"`

	// state is Invited until the user has accepted the invitation, then Active.
	// +optional
	State MembershipState `json:"state,omitempty"`

	// inviteSecretName names the Secret holding the invitation token and URL, while invited.
	// +optional
	InviteSecretName string `json:"inviteSecretName,omitempty"`
}

// Membership gives a user a role in an organization or one of its projects.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=mem,categories=tenancy
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Project",type=string,JSONPath=`.spec.project`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Membership struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MembershipSpec `json:"spec"`
	// status is what the operator last observed and did. It starts with observedGeneration -1, so
	// that kstatus (kubectl wait, Argo CD, Flux) reads a new object as InProgress, not Current,
	// until the operator has looked at it.
	// +kubebuilder:default={"observedGeneration":-1}
	Status MembershipStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// MembershipList is a list of Memberships.
type MembershipList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Membership `json:"items"`
}
