// Command devstack runs Tenancy on one machine with no cluster: the kube-apiserver and etcd that
// the tests use, kube-controller-manager (garbage collection and namespace deletion), a local
// PostgreSQL, the CRDs, the admission policies and webhooks, the manager, and config/samples. It
// is what `make dev` runs.
//
// State lives in .dev/ (etcd data, kubeconfig, logs, binaries) and is reused by the next run;
// --clean starts afresh. --once stops everything once the samples are Ready (for smoke tests).
package main
