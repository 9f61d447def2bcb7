package v1alpha1

// The data keys of the Secrets the operator writes. They are part of the API: applications and
// GitOps tooling read these Secrets, and authd reads the invitation link from them.
const (
	// InvitationTokenKey holds a Membership's invitation token in the Secret <membership>-invite.
	InvitationTokenKey = "token"
	// InvitationURLKey holds the link to authd's invitation page, token included.
	InvitationURLKey = "url"
	// APIKeySecretKey holds an APIKey's key (`tnc_<id>_<secret>`) in the Secret
	// spec.secretName names.
	APIKeySecretKey = "apiKey"
	// APIKeyIDSecretKey holds the public id of that key.
	APIKeyIDSecretKey = "keyID"
)
