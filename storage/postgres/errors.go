package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// SQLSTATE codes we translate.
const (
	codeUniqueViolation      = "23505"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// translate maps a driver error to the sentinel callers branch on, keeping
// the driver error wrapped for logs. notFound is what no rows means to the
// caller: storage.ErrNotFound for our records, fosite.ErrNotFound for
// fosite's methods.
func translate(op string, err error, notFound error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound
	}
	switch pgCode(err) {
	case codeUniqueViolation:
		return fmt.Errorf("postgres: %s: %w: %w", op, storage.ErrAlreadyExists, err)
	case codeSerializationFailure, codeDeadlockDetected:
		// fosite answers this with "retry the request" instead of a server
		// error, which is what a concurrent refresh of one token deserves.
		return fosite.ErrSerializationFailure.WithWrap(err).WithDebugf("postgres: %s: %s", op, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// recordErr translates errors of the methods on our own records.
func recordErr(op string, err error) error { return translate(op, err, storage.ErrNotFound) }

// fositeErr translates errors of fosite's storage methods.
func fositeErr(op string, err error) error { return translate(op, err, fosite.ErrNotFound) }
