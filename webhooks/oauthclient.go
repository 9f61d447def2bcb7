package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// No namespaceSelector, unlike the other namespaced kinds: the platform-wide clients live in the
// operator's namespace, and only platform admins may register them there.
// +kubebuilder:webhook:path=/mutate-tenancy-dev-v1alpha1-oauthclient,mutating=true,failurePolicy=fail,sideEffects=None,groups=tenancy.dev,resources=oauthclients,verbs=create;update,versions=v1alpha1,name=moauthclient.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5
// +kubebuilder:webhook:path=/validate-tenancy-dev-v1alpha1-oauthclient,mutating=false,failurePolicy=fail,sideEffects=NoneOnDryRun,groups=tenancy.dev,resources=oauthclients,verbs=create;update;delete,versions=v1alpha1,name=voauthclient.tenancy.dev,admissionReviewVersions=v1,timeoutSeconds=5

// oauthClientWebhook defaults and validates OAuthClients: who may register a client where, and
// the redirect URIs that the CRD's schema cannot judge.
type oauthClientWebhook struct{ *admitter }

var (
	redirectURIsPath           = field.NewPath("spec", "redirectURIs")
	postLogoutRedirectURIsPath = field.NewPath("spec", "postLogoutRedirectURIs")
	grantTypesPath             = field.NewPath("spec", "grantTypes")
)

// Default fills spec.secretName of a confidential client (when the name is known; with
// generateName the controller derives it) and stamps the requester.
func (w *oauthClientWebhook) Default(ctx context.Context, c *tenancyv1.OAuthClient) error {
	if !c.Spec.Public && c.Spec.SecretName == "" && c.Name != "" {
		c.Spec.SecretName = c.SecretNameOrDefault()
	}
	return w.defaultMetadata(ctx, c)
}

// ValidateCreate checks who registers the client where, and its redirect URIs and grants.
func (w *oauthClientWebhook) ValidateCreate(ctx context.Context, c *tenancyv1.OAuthClient) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	denied, err := w.authorizeClient(ctx, who, c, "create")
	if err != nil {
		return nil, err
	}
	denied = append(denied, firstPartyByPlatformAdmin(who, nil, c)...)
	return nil, w.refuse(c, append(denied, validOAuthClientSpec(c)...), false)
}

// firstPartyByPlatformAdmin refuses spec.firstParty (true, or made true) to anyone but a platform
// admin: a first-party client signs people in without asking them, so an organization's Admin
// who could set it would receive its Owners' tokens at a redirect URI of her choosing without
// their knowing.
func firstPartyByPlatformAdmin(who requester, old, c *tenancyv1.OAuthClient) field.ErrorList {
	if !c.Spec.FirstParty || (old != nil && old.Spec.FirstParty) || who.platformAdmin {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("spec", "firstParty"), fmt.Sprintf(
		"%s is not a platform admin: only they mark a client first-party (no consent page); leave it false and people are asked once", who.name()))}
}

// ValidateUpdate checks the finalizer, authority, and the new redirect URIs and grants.
func (w *oauthClientWebhook) ValidateUpdate(ctx context.Context, old, c *tenancyv1.OAuthClient) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	if errs := finalizerKept(old, c, who); len(errs) > 0 || c.DeletionTimestamp != nil {
		return nil, w.refuse(c, errs, false) // being deleted: only metadata can change
	}
	denied, err := w.authorizeClient(ctx, who, c, "change")
	if err != nil {
		return nil, err
	}
	denied = append(denied, firstPartyByPlatformAdmin(who, old, c)...)
	return nil, w.refuse(c, append(denied, validOAuthClientSpec(c)...), false)
}

// ValidateDelete checks authority and records who asked.
func (w *oauthClientWebhook) ValidateDelete(ctx context.Context, c *tenancyv1.OAuthClient) (admission.Warnings, error) {
	who, err := w.requesterOf(ctx)
	if err != nil {
		return nil, err
	}
	denied, err := w.authorizeClient(ctx, who, c, "delete")
	if err != nil || len(denied) > 0 {
		return nil, errors.Join(err, w.refuse(c, denied, true))
	}
	w.recordDeletion(ctx, c, c.Namespace, "oauthclient/"+c.ClientID(), who)
	return nil, nil
}

// authorizeClient decides who may create, change or delete c: platform admins in the operator's
// namespace, where clients are platform-wide; Admins and Owners of the organization in its
// namespace. A new client needs a namespace that an organization owns. Deletions while the
// namespace is being deleted pass (the namespace controller empties it under its own name).
func (w *oauthClientWebhook) authorizeClient(ctx context.Context, who requester, c *tenancyv1.OAuthClient, verb string) (field.ErrorList, error) {
	t, err := w.orgNamespaceOf(ctx, c.Namespace)
	if err != nil {
		return nil, err
	}
	if c.Namespace == w.settings.OperatorNamespace {
		if verb == "delete" && t.namespace != nil && t.namespace.DeletionTimestamp != nil {
			return nil, nil
		}
		return platformWideClient(who, verb, c.Namespace), nil
	}
	if verb == "create" {
		if errs := boundNamespace(c.Namespace, t); len(errs) > 0 {
			return errs, nil
		}
	}
	return w.authorizeIn(ctx, who, t, c.Namespace, "", roleChange{kind: "OAuth client", verb: verb})
}

// platformWideClient refuses requesters who are not platform admins in the operator's
// namespace, where a client lets members of every organization sign in.
func platformWideClient(who requester, verb, ns string) field.ErrorList {
	if who.platformAdmin {
		return nil
	}
	return field.ErrorList{field.Forbidden(namespacePath, fmt.Sprintf(
		"%s is not a platform admin (--platform-admin-users, --platform-admin-groups): only they %s the platform-wide OAuth clients of namespace %s; "+
			"an organization's Admins and Owners register its clients in its own namespace", who.name(), verb, ns))}
}

// validOAuthClientSpec checks what the CRD's schema cannot: the redirect URIs and the grants.
func validOAuthClientSpec(c *tenancyv1.OAuthClient) field.ErrorList {
	errs := validRedirectURIs(redirectURIsPath, c.Spec.RedirectURIs, c.Spec.Public)
	errs = append(errs, validRedirectURIs(postLogoutRedirectURIsPath, c.Spec.PostLogoutRedirectURIs, c.Spec.Public)...)
	return append(errs, refreshNeedsCode(grantTypesPath, c.GrantTypesOrDefault())...)
}

// validRedirectURIs refuses, each by its index, the redirect URIs that authd must not send a
// code or a person to (redirectURIProblem).
func validRedirectURIs(path *field.Path, uris []string, public bool) field.ErrorList {
	var errs field.ErrorList
	for i, uri := range uris {
		if problem := redirectURIProblem(uri, public); problem != "" {
			errs = append(errs, field.Invalid(path.Index(i), uri, problem))
		}
	}
	return errs
}

// loopbackHosts are the hosts on which a native app may listen for its redirect over plain http
// (RFC 8252, section 7.3).
var loopbackHosts = []string{"127.0.0.1", "::1", "localhost"}

// redirectURIProblem says what is wrong with a redirect URI, or "" when nothing is: it must be an
// absolute URL without a fragment, userinfo or wildcard (authd compares them exactly); https,
// or http on a loopback address for native apps; or, for public clients, a private-use scheme in
// reverse-DNS form (RFC 8252, section 7.1), such as com.example.app:/callback.
func redirectURIProblem(raw string, public bool) string {
	if strings.Contains(raw, "*") {
		return "must not contain a wildcard (*): authd compares redirect URIs exactly"
	}
	if strings.Contains(raw, "#") {
		return "must not have a fragment (#)"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "is not a URL"
	}
	if !u.IsAbs() {
		return "must be an absolute URL, with a scheme"
	}
	if u.User != nil {
		return "must not carry a user name or password"
	}
	switch {
	case u.Scheme == "https":
		if u.Host == "" || u.Hostname() == "" {
			return "must name a host"
		}
	case u.Scheme == "http":
		if !slices.Contains(loopbackHosts, u.Hostname()) {
			return "http is allowed only on a loopback address (127.0.0.1, [::1] or localhost), for native apps: use https"
		}
	case strings.Contains(u.Scheme, "."):
		if !public {
			return "a private-use scheme is for native apps, which are public clients: set spec.public, or use https"
		}
		if strings.TrimPrefix(raw[len(u.Scheme):], ":") == "" {
			return "must have a path after the scheme, such as " + u.Scheme + ":/callback"
		}
	default:
		return "must be https, http on a loopback address, or (for public clients) a private-use scheme in reverse-DNS form such as com.example.app:/callback"
	}
	return ""
}

// refreshNeedsCode refuses the refresh_token grant without authorization_code: refresh tokens
// come from a sign-in.
func refreshNeedsCode(path *field.Path, grants []tenancyv1.OAuthGrantType) field.ErrorList {
	if !slices.Contains(grants, tenancyv1.GrantRefreshToken) || slices.Contains(grants, tenancyv1.GrantAuthorizationCode) {
		return nil
	}
	return field.ErrorList{field.Invalid(path, grants,
		"refresh_token needs authorization_code: refresh tokens come from a sign-in")}
}
