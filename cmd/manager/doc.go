// Command manager runs the Tenancy controllers and admission webhooks: it migrates the database
// schema, reconciles every tenancy kind into PostgreSQL rows, Secrets and RBAC, and serves the
// defaulting and validating webhooks.
package main
