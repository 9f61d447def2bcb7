// Package webhooks holds the admission webhooks of every tenancy kind: defaulters that fill the
// defaults, normalise emails and stamp who changed an object, and validators that refuse role
// changes a requester may not make and objects that do not fit their organization.
//
// Decisions read the manager's cache. Two exceptions are serialized per organization in
// PostgreSQL, which also remembers what other replicas admitted and their caches may not show
// yet: the removal or demotion of an organization's Owner, so that two replicas cannot each
// admit the removal of one of the last two Owners, and a creation that a tier quota limits, so
// that two replicas cannot each admit one into the last slot.
package webhooks
