// Package v1alpha1 contains the tenancy.dev/v1alpha1 API: Organization, Project, Membership,
// APIKey, TenantTable, AccountSuspension and OAuthClient, the role ladder they share, and the
// labels, annotations, condition types and reasons that the operator, authd and GitOps tooling
// read on them.
// +kubebuilder:object:generate=true
// +groupName=tenancy.dev
package v1alpha1
