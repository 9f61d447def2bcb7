// Package db is the PostgreSQL side of the operator: the embedded migrations of the schema
// `tenancy` (applied at start under an advisory lock), one file per table family for the rows
// that custom resources produce (organizations, projects, memberships, API keys, context keys),
// the quota admission the webhooks ask for, the row-level-security policies of TenantTables, and
// the classification of database errors into "retry later" and "refused".
package db
