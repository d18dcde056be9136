package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
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
	if unavailable(err) {
		return fmt.Errorf("postgres: %s: %w: %w", op, storage.ErrUnavailable, err)
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

// unavailable tells a database that could not be reached or did not answer
// in time (the call may or may not have taken effect; retrying later is the
// remedy) from one that answered with an error (a bug or bad data). A caller
// that went away (context.Canceled) is neither: it stays as it is.
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutting down, starting up
			pgErr.Code == "53300", // too many connections
			pgErr.Code == "25006": // read-only transaction: a standby during failover
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	// SafeToRetry: the connection failed before the statement was sent.
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, puddle.ErrClosedPool) || errors.Is(err, net.ErrClosed)
}

// recordErr translates errors of the methods on our own records.
func recordErr(op string, err error) error { return translate(op, err, storage.ErrNotFound) }

// fositeErr translates errors of fosite's storage methods.
func fositeErr(op string, err error) error { return translate(op, err, fosite.ErrNotFound) }

// MarkUnavailable returns err marked as storage.ErrUnavailable when it
// says the database could not be reached or did not answer in time, and
// err unchanged otherwise. For code that talks to PostgreSQL without the
// Store (migrations).
func MarkUnavailable(err error) error { return unavailableOr(err) }

// unavailableOr marks err as storage.ErrUnavailable when it is one.
func unavailableOr(err error) error {
	if err != nil && unavailable(err) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}
