// Package tenant holds what the controllers and the admission webhooks share about tenants, so
// that both decide alike: the cache field indexes and the lookups built on them (register them
// once per manager with Setup), which Organization owns a namespace, which namespaces no
// organization may own, and the per-namespace counts that the quotas read.
package tenant
