package webhooks_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
	"github.com/tenancy-dev/tenancy/webhooks"
)

// The CRD refuses a TenantTable in a reserved schema before the API server calls any validating
// webhook, so these specs send the admission review to the webhook server themselves, at the
// address and with the CA that the API server's webhook configuration names: the webhook must
// refuse it on its own.
var _ = Describe("TenantTable schemas", func() {
	// validate sends t's creation by a platform admin to the TenantTable validating webhook.
	validate := func(ctx context.Context, t *tenancyv1.TenantTable) *admissionv1.AdmissionResponse {
		GinkgoHelper()
		var config admissionregistrationv1.ValidatingWebhookConfiguration
		Expect(admin.Get(ctx, client.ObjectKey{Name: webhooks.ValidatingConfigurationName}, &config)).To(Succeed())
		i := slices.IndexFunc(config.Webhooks, func(w admissionregistrationv1.ValidatingWebhook) bool {
			return w.Name == "vtenanttable.tenancy.dev"
		})
		Expect(i).NotTo(Equal(-1), "the TenantTable validating webhook is configured")
		clientConfig := config.Webhooks[i].ClientConfig
		Expect(clientConfig.URL).NotTo(BeNil())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(clientConfig.CABundle)).To(BeTrue())
		httpClient := &http.Client{Timeout: 10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}

		t.TypeMeta = metav1.TypeMeta{APIVersion: tenancyv1.GroupVersion.String(), Kind: "TenantTable"}
		object, err := json.Marshal(t)
		Expect(err).NotTo(HaveOccurred())
		body, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:       types.UID(uniqueName("review")),
				Kind:      metav1.GroupVersionKind{Group: tenancyv1.GroupVersion.Group, Version: tenancyv1.GroupVersion.Version, Kind: "TenantTable"},
				Resource:  metav1.GroupVersionResource{Group: tenancyv1.GroupVersion.Group, Version: tenancyv1.GroupVersion.Version, Resource: "tenanttables"},
				Name:      t.Name,
				Operation: admissionv1.Create,
				UserInfo:  authenticationv1.UserInfo{Username: "ops", Groups: []string{"system:masters", "system:authenticated"}},
				Object:    runtime.RawExtension{Raw: object},
			},
		})
		Expect(err).NotTo(HaveOccurred())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, *clientConfig.URL, bytes.NewReader(body))
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		Expect(resp.StatusCode).To(Equal(http.StatusOK))
		var review admissionv1.AdmissionReview
		Expect(json.NewDecoder(resp.Body).Decode(&review)).To(Succeed())
		Expect(review.Response).NotTo(BeNil())
		return review.Response
	}
	tenantTable := func(schema string) *tenancyv1.TenantTable {
		return &tenancyv1.TenantTable{
			ObjectMeta: metav1.ObjectMeta{Name: uniqueName("sneaky")},
			Spec:       tenancyv1.TenantTableSpec{Schema: schema, Table: "users", OrganizationColumn: "id"},
		}
	}

	It("are refused by the validating webhook itself when they are the operator's or PostgreSQL's", func(ctx SpecContext) {
		allowed := validate(ctx, tenantTable("public"))
		Expect(allowed.Allowed).To(BeTrue(), "an application schema passes: %v", allowed.Result)

		for _, schema := range []string{"tenancy", "pg_catalog", "information_schema", "pg_toast", "pg_temp_3"} {
			refused := validate(ctx, tenantTable(schema))
			Expect(refused.Allowed).To(BeFalse(), schema)
			Expect(refused.Result).NotTo(BeNil())
			Expect(refused.Result.Code).To(BeEquivalentTo(http.StatusUnprocessableEntity), schema)
			Expect(refused.Result.Message).To(ContainSubstring(
				"spec.schema: Forbidden: schema %s is reserved (the operator's own schema or PostgreSQL's)", schema))
		}
	})
})
