// Command devstack runs Tenancy on one machine with no cluster: the kube-apiserver and etcd that
// the tests use, kube-controller-manager (garbage collection and namespace deletion), a local
// PostgreSQL, the CRDs, the admission policies and webhooks, the manager, authd, kubectl's OAuth
// client (kubectl-oauthclient.yaml), and config/samples. It is what `make dev` runs.
//
// authd serves HTTPS on https://localhost:8090 with a certificate of a CA the stack makes
// (.dev/ca.crt), and is its own issuer: kube-apiserver trusts its ID tokens for the OAuth client
// kubectl through a structured authentication configuration (.dev/authentication-config.yaml),
// so that kubectl works as a person signed in to authd (.dev/kubeconfig-oidc).
//
// State lives in .dev/ (etcd data, kubeconfigs, the CA and authd's certificate, logs, binaries)
// and is reused by the next run; --clean starts afresh. --once stops everything once the samples
// are Ready (for smoke tests).
package main
