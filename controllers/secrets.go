package controllers

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1 "github.com/tenancy-dev/tenancy/api/v1alpha1"
)

// getSecret reads a Secret from the cache, which holds only the Secrets the operator labelled,
// and falls back to the API server so that a Secret somebody else made is seen before anything is
// written for a new one.
func getSecret(ctx context.Context, c client.Reader, apiReader client.Reader, namespace, name string) (*corev1.Secret, bool, error) {
	secret, found, err := cachedSecret(ctx, c, namespace, name)
	if found || err != nil {
		return secret, found, err
	}
	return cachedSecret(ctx, apiReader, namespace, name)
}

// cachedSecret reads a Secret from c; a missing one is returned empty, with found false.
func cachedSecret(ctx context.Context, c client.Reader, namespace, name string) (*corev1.Secret, bool, error) {
	secret := &corev1.Secret{}
	err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, secret)
	if apierrors.IsNotFound(err) {
		return &corev1.Secret{}, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("getting secret %s: %w", name, err)
	}
	return secret, true, nil
}

// explainExistingSecret tells apart a Secret the cache has not seen yet (ours: retry) from one
// the operator never created (Stalled).
func explainExistingSecret(ctx context.Context, apiReader client.Reader, namespace, name string) error {
	existing := &corev1.Secret{}
	if err := apiReader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, existing); err != nil {
		return fmt.Errorf("getting secret %s: %w", name, err)
	}
	if existing.Labels[tenancyv1.ManagedByLabel] == tenancyv1.ManagedByValue {
		return fmt.Errorf("secret %s is not in the cache yet", name)
	}
	return secretConflict(name)
}

// writeOwnedSecret creates the Secret name for owner, or patches secret (which exists and owner
// controls), with the operator's label, the given annotations and exactly data.
func writeOwnedSecret(ctx context.Context, c client.Client, apiReader client.Reader, owner client.Object, secret *corev1.Secret,
	exists bool, name string, annotations map[string]string, data map[string][]byte) error {
	before := secret.DeepCopy()
	secret.Name, secret.Namespace = name, owner.GetNamespace()
	secret.Type = corev1.SecretTypeOpaque
	secret.Labels = mergeMaps(secret.Labels, map[string]string{tenancyv1.ManagedByLabel: tenancyv1.ManagedByValue})
	if annotations != nil {
		secret.Annotations = mergeMaps(secret.Annotations, annotations)
	}
	secret.Data = data
	if err := controllerutil.SetControllerReference(owner, secret, c.Scheme()); err != nil {
		return err
	}
	var err error
	if exists {
		err = c.Patch(ctx, secret, client.MergeFrom(before))
	} else {
		err = c.Create(ctx, secret)
		if apierrors.IsAlreadyExists(err) {
			return explainExistingSecret(ctx, apiReader, secret.Namespace, name)
		}
	}
	if err != nil {
		return fmt.Errorf("writing secret %s: %w", name, err)
	}
	return nil
}

// secretConflict stalls the object on a Secret of the wanted name that the operator did not make.
func secretConflict(name string) error {
	return stalled(tenancyv1.SecretConflictReason,
		"Secret %s exists and was not created for this object; delete or rename it, the operator never overwrites it", name)
}

// deleteOwnedSecret deletes the named Secret if owner controls it.
func deleteOwnedSecret(ctx context.Context, c client.Client, owner client.Object, name string) error {
	secret := &corev1.Secret{}
	err := c.Get(ctx, client.ObjectKey{Namespace: owner.GetNamespace(), Name: name}, secret)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting secret %s: %w", name, err)
	}
	if !metav1.IsControlledBy(secret, owner) {
		return nil
	}
	if err := c.Delete(ctx, secret); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting secret %s: %w", name, err)
	}
	return nil
}

// mergeMaps returns base with extra's entries added, for labels and annotations.
func mergeMaps(base, extra map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(extra))
	maps.Copy(out, base)
	maps.Copy(out, extra)
	return out
}
