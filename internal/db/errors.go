package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotMigrated is returned while the schema migrations have not completed yet.
var ErrNotMigrated = errors.New("the database schema is not migrated yet")

// IsUnavailable reports whether err means the database could not be reached or is not ready, as
// opposed to the database refusing what was asked. Callers retry the former with backoff.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrNotMigrated) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || // connection exception
			pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03" || // shutdown, cannot connect now
			pgErr.Code == "53300" || pgErr.Code == "53000" // too many connections, insufficient resources
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.SafeToRetry(err)
}

// IsForeignKeyViolation reports whether err is a foreign key violation (SQLSTATE 23503).
func IsForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

// isUniqueViolationOn reports whether err is a unique violation of the named constraint.
func isUniqueViolationOn(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

// IsQueryError reports whether the database answered with an error (any SQLSTATE).
func IsQueryError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// RowIDInUseError is returned by UpsertOrganization and UpsertProject when the row id asked for
// (tenancy.dev/row-id, or the status.id of a row deleted by hand) is already the id of another
// object's row. Retrying cannot help until that row goes or another id is asked for.
type RowIDInUseError struct {
	// ID is the row id asked for.
	ID string
	// Holder names the row that has it: "organization acme", "project web of organization acme".
	Holder string
}

// Error says which id and whose row.
func (e *RowIDInUseError) Error() string {
	return fmt.Sprintf("row id %s is already the id of %s", e.ID, e.Holder)
}
