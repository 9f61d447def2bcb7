// Command release writes what a Tenancy release publishes into one directory (`make release`):
// install.yaml (config/default, for clusters with cert-manager), install-self-signed.yaml
// (config/self-signed, without cert-manager), the Helm chart package, the image archives and a
// SHA256SUMS file, every part carrying the same version and image references.
package main
