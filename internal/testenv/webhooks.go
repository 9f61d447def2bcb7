package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tenancy-dev/tenancy/webhooks"
)

// WebhookConfigurations reads config/webhook/manifests.yaml (generated from the webhooks'
// markers) and names the configurations as config/default does.
func WebhookConfigurations() ([]*admissionregistrationv1.MutatingWebhookConfiguration, []*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	path := filepath.Join(RepoRoot(), "config", "webhook", "manifests.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var mutating []*admissionregistrationv1.MutatingWebhookConfiguration
	var validating []*admissionregistrationv1.ValidatingWebhookConfiguration
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", path, err)
		}
		var meta struct{ Kind string }
		if err := utilyaml.Unmarshal(doc, &meta); err != nil {
			return nil, nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		switch meta.Kind {
		case "MutatingWebhookConfiguration":
			c := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := utilyaml.Unmarshal(doc, c); err != nil {
				return nil, nil, err
			}
			c.Name = webhooks.MutatingConfigurationName
			mutating = append(mutating, c)
		case "ValidatingWebhookConfiguration":
			c := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := utilyaml.Unmarshal(doc, c); err != nil {
				return nil, nil, err
			}
			c.Name = webhooks.ValidatingConfigurationName
			validating = append(validating, c)
		}
	}
	return mutating, validating, nil
}

// InstallWebhookConfigurations creates or replaces the webhook configurations, calling a webhook
// server at baseURL (https://host:port) instead of the in-cluster Service, with no CA bundle:
// the manager's --webhook-self-signed puts its own in.
func InstallWebhookConfigurations(ctx context.Context, c client.Client, baseURL string) error {
	mutating, validating, err := WebhookConfigurations()
	if err != nil {
		return err
	}
	toURL := func(cc *admissionregistrationv1.WebhookClientConfig) {
		u := baseURL + *cc.Service.Path
		cc.URL, cc.Service, cc.CABundle = &u, nil, nil
	}
	var objects []client.Object
	for _, m := range mutating {
		for i := range m.Webhooks {
			toURL(&m.Webhooks[i].ClientConfig)
		}
		objects = append(objects, m)
	}
	for _, v := range validating {
		for i := range v.Webhooks {
			toURL(&v.Webhooks[i].ClientConfig)
		}
		objects = append(objects, v)
	}
	for _, obj := range objects {
		u := &unstructured.Unstructured{}
		data, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return err
		}
		u.SetUnstructuredContent(data) // apiVersion and kind come from the manifest
		if err := apply(ctx, c, u); err != nil {
			return err
		}
	}
	return nil
}

// WithWebhooks makes env install the webhook configurations, pointed at a local webhook server
// with envtest's own certificate (see Manager.WebhookInstall).
func WithWebhooks(env *envtest.Environment) error {
	mutating, validating, err := WebhookConfigurations()
	if err != nil {
		return err
	}
	env.WebhookInstallOptions = envtest.WebhookInstallOptions{MutatingWebhooks: mutating, ValidatingWebhooks: validating}
	return nil
}
