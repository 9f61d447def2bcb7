package v1alpha1

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OAuthGrantType is an OAuth 2.0 grant an OAuthClient may use at authd's token endpoint.
// +kubebuilder:validation:Enum=authorization_code;refresh_token;"urn:ietf:params:oauth:grant-type:token-exchange"
type OAuthGrantType string

// The grant types an OAuthClient may name.
const (
	GrantAuthorizationCode OAuthGrantType = "authorization_code"
	GrantRefreshToken      OAuthGrantType = "refresh_token"
	GrantTokenExchange     OAuthGrantType = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// OAuthScope is an OpenID Connect scope an OAuthClient may ask for.
// +kubebuilder:validation:Enum=openid;profile;email;offline_access
type OAuthScope string

// The scopes an OAuthClient may name.
const (
	ScopeOpenID        OAuthScope = "openid"
	ScopeProfile       OAuthScope = "profile"
	ScopeEmail         OAuthScope = "email"
	ScopeOfflineAccess OAuthScope = "offline_access"
)

// OAuthClientSpec is the desired state of an OAuthClient.
// +kubebuilder:validation:XValidation:rule="(has(self.public) && self.public) == (has(oldSelf.public) && oldSelf.public)",message="spec.public is immutable: a client that changed type would orphan or expose its secrets; create another OAuthClient instead",fieldPath=".public"
// +kubebuilder:validation:XValidation:rule="!has(self.grantTypes) || !('authorization_code' in self.grantTypes) || (has(self.redirectURIs) && size(self.redirectURIs) > 0)",message="the authorization_code grant needs at least one redirect URI",fieldPath=".redirectURIs"
// +kubebuilder:validation:XValidation:rule="!has(self.scopes) || !('offline_access' in self.scopes) || (has(self.grantTypes) && 'refresh_token' in self.grantTypes)",message="offline_access needs the refresh_token grant in spec.grantTypes",fieldPath=".scopes"
// +kubebuilder:validation:XValidation:rule="!(has(self.public) && self.public) || !has(self.secretName)",message="a public client has no secret: spec.secretName is for confidential clients only",fieldPath=".secretName"
// +kubebuilder:validation:XValidation:rule="!(has(self.public) && self.public) || !has(self.rotation)",message="a public client has no secret to rotate: spec.rotation is for confidential clients only",fieldPath=".rotation"
type OAuthClientSpec struct {
	// displayName is the application's name, shown on the consent page.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=100
	DisplayName string `json:"displayName"`

	// redirectURIs are where authd may send the browser back with a code; a request must name
	// one of them exactly. https, except http on a loopback address (127.0.0.1, [::1],
	// localhost) and, for public clients, a private-use scheme in reverse-DNS form
	// (com.example.app:/callback), as RFC 8252 describes for native apps. No fragment, userinfo
	// or wildcard. Required with the authorization_code grant.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MaxLength=2000
	RedirectURIs []string `json:"redirectURIs,omitempty"`

	// postLogoutRedirectURIs are where authd may send the browser after a logout the client
	// asked for; the same rules as redirectURIs.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MaxLength=2000
	PostLogoutRedirectURIs []string `json:"postLogoutRedirectURIs,omitempty"`

	// public marks a client that cannot keep a secret (a single-page app, a native or command
	// line app): it gets no secret and must use PKCE with S256. Immutable.
	// +optional
	// +kubebuilder:default=false
	Public bool `json:"public,omitempty"`

	// firstParty marks the platform's own application: people sign in without a consent page.
	// +optional
	// +kubebuilder:default=false
	FirstParty bool `json:"firstParty,omitempty"`

	// grantTypes are the grants the client may use. refresh_token needs authorization_code.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:default={authorization_code}
	GrantTypes []OAuthGrantType `json:"grantTypes,omitempty"`

	// scopes are the scopes the client may ask for; openid is required, and offline_access needs
	// the refresh_token grant.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:default={openid,profile,email}
	// +kubebuilder:validation:XValidation:rule="'openid' in self",message="scopes must contain openid"
	Scopes []OAuthScope `json:"scopes,omitempty"`

	// accessTokenLifetime caps the lifetime of the access and ID tokens issued to the client,
	// between 1m and 24h; authd applies the shorter of this and its own setting.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="accessTokenLifetime must be between 1m and 24h"
	AccessTokenLifetime *metav1.Duration `json:"accessTokenLifetime,omitempty"`

	// refreshTokenLifetime caps how long the client's refresh tokens last, between 1h and 2160h
	// (90 days); authd applies the shorter of this and its own setting.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('2160h')",message="refreshTokenLifetime must be between 1h and 2160h (90 days)"
	RefreshTokenLifetime *metav1.Duration `json:"refreshTokenLifetime,omitempty"`

	// secretName names the Secret (keys clientID and clientSecret) that receives a confidential
	// client's secret. Defaults to <name>-oauth-client.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	SecretName string `json:"secretName,omitempty"`

	// rotation is any string; changing it issues a new client secret. The previous one keeps
	// working for the rotation grace period.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Rotation string `json:"rotation,omitempty"`
}

// OAuthClientStatus is the observed state of an OAuthClient.
type OAuthClientStatus struct {
	CommonStatus `json:",inline"`

	// clientID is the client's OAuth client_id: <name>.<namespace>.
	// +optional
	ClientID string `json:"clientID,omitempty"`

	// secretName is the Secret that holds a confidential client's current secret.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// rotatedAt is when the current client secret was issued.
	// +optional
	RotatedAt *metav1.Time `json:"rotatedAt,omitempty"`
}

// OAuthClient registers an application that signs people in through authd with OpenID Connect.
// In the operator's namespace it is platform-wide: members of any organization may sign in to
// it; in an organization's namespace it belongs to that organization.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=oac,categories=tenancy
// +kubebuilder:printcolumn:name="Client ID",type=string,JSONPath=`.status.clientID`
// +kubebuilder:printcolumn:name="Public",type=boolean,JSONPath=`.spec.public`
// +kubebuilder:printcolumn:name="First party",type=boolean,JSONPath=`.spec.firstParty`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type OAuthClient struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec OAuthClientSpec `json:"spec"`
	// status is what the operator last observed and did. It starts with observedGeneration -1, so
	// that kstatus (kubectl wait, Argo CD, Flux) reads a new object as InProgress, not Current,
	// until the operator has looked at it.
	// +kubebuilder:default={"observedGeneration":-1}
	Status OAuthClientStatus `json:"status,omitempty"`
}

// ClientID is the client's OAuth client_id, <name>.<namespace>: predictable, so that an
// application can be configured before the object is Ready, and unique, since namespace names
// have no dots.
func (c *OAuthClient) ClientID() string { return c.Name + "." + c.Namespace }

// SecretNameOrDefault is spec.secretName, or <name>-oauth-client when unset.
func (c *OAuthClient) SecretNameOrDefault() string {
	if c.Spec.SecretName != "" {
		return c.Spec.SecretName
	}
	return c.Name + "-oauth-client"
}

// GrantTypesOrDefault is spec.grantTypes, or authorization_code (the CRD's default) when unset.
func (c *OAuthClient) GrantTypesOrDefault() []OAuthGrantType {
	if len(c.Spec.GrantTypes) == 0 {
		return []OAuthGrantType{GrantAuthorizationCode}
	}
	return c.Spec.GrantTypes
}

// ScopesOrDefault is spec.scopes, or openid, profile and email (the CRD's default) when unset.
func (c *OAuthClient) ScopesOrDefault() []OAuthScope {
	if len(c.Spec.Scopes) == 0 {
		return []OAuthScope{ScopeOpenID, ScopeProfile, ScopeEmail}
	}
	return c.Spec.Scopes
}

// HasGrant reports whether the client may use grant (spec.grantTypes, or its default).
func (c *OAuthClient) HasGrant(grant OAuthGrantType) bool {
	return slices.Contains(c.GrantTypesOrDefault(), grant)
}

// +kubebuilder:object:root=true

// OAuthClientList is a list of OAuthClients.
type OAuthClientList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OAuthClient `json:"items"`
}
