package v1alpha1

// The data keys of the Secrets the operator writes. They are part of the API: applications and
// GitOps tooling read these Secrets, and authd reads the invitation link from them.
const (
	// InvitationTokenKey holds a Membership's invitation token in the Secret <membership>-invite.
	InvitationTokenKey = "token"
	// InvitationURLKey holds the link to authd's invitation page, token included.
	InvitationURLKey = "url"
	// InvitationDeliveryKey holds how the invitation was delivered: Email or Link. An emailed
	// invitation's Secret has no token and no url, only InvitationSentToKey and the token's hash.
	InvitationDeliveryKey = "delivery"
	// InvitationSentToKey holds the address an emailed invitation was sent to.
	InvitationSentToKey = "sentTo"
	// InvitationTokenHashKey holds the hex SHA-256 of an emailed invitation's token: enough to
	// tell that the invitation is still the live one, useless to accept it.
	InvitationTokenHashKey = "tokenSHA256"
	// APIKeySecretKey holds an APIKey's key (`tnc_<id>_<secret>`) in the Secret
	// spec.secretName names.
	APIKeySecretKey = "apiKey"
	// APIKeyIDSecretKey holds the public id of that key.
	APIKeyIDSecretKey = "keyID"
	// OAuthClientIDSecretKey holds a confidential OAuthClient's client_id (<name>.<namespace>)
	// in the Secret spec.secretName names.
	OAuthClientIDSecretKey = "clientID"
	// OAuthClientSecretKey holds that client's current secret (`tcs_…`).
	OAuthClientSecretKey = "clientSecret"
)
