package postgrestest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wxidp/wxidp/storage/postgres"
)

// EnvURL names the variable holding the server tests create databases on.
// The database it names is only used to run CREATE and DROP DATABASE.
const EnvURL = "WXIDP_TEST_DATABASE_URL"

// DefaultURL is the local cluster `make test` starts.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// NamePrefix starts the name of every database DSN creates, so leftovers of
// a killed test run are easy to find and drop.
const NamePrefix = "wxidp_t_"

const (
	connectTimeout = 10 * time.Second
	// Dropping may wait for the test's own connections to go; WITH (FORCE)
	// ends them, so this only bounds a wedged server.
	dropTimeout = 30 * time.Second
)

func serverURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return DefaultURL
}

// DSN creates an empty database and returns a DSN for it; the database is
// dropped when t ends.
func DSN(t testing.TB) string {
	t.Helper()
	return create(t, "")
}

// create makes a database copied from template (template1 when empty) and
// registers its drop.
func create(t testing.TB, template string) string {
	t.Helper()
	server := serverURL()
	name := NamePrefix + randomHex(t)

	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn := connect(ctx, t, server)
	defer conn.Close(context.Background())
	// Identifiers cannot be bound as parameters; names are ours (prefix and
	// hex) and quoted anyway.
	stmt := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		stmt += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("postgrestest: create database %s on %s: %v", name, redact(server), err)
	}
	t.Cleanup(func() { drop(t, server, name) })

	dsn, err := withDatabase(server, name)
	if err != nil {
		t.Fatalf("postgrestest: %s: %v", EnvURL, err)
	}
	return dsn
}

// NewStore returns a Store, built with opts, on a fresh database with every
// migration applied, the pool it uses, and the database's DSN (for tests
// that open their own connections). The pool is closed when t ends, before
// the database is dropped.
func NewStore(t testing.TB, opts ...postgres.Option) (*postgres.Store, *pgxpool.Pool, string) {
	t.Helper()
	server := serverURL()
	tpl, err := migratedTemplate(server)
	var unreachable *unreachableError
	if errors.As(err, &unreachable) {
		fatalUnreachable(t, server, unreachable.err)
	}
	if err != nil {
		t.Fatalf("postgrestest: template database on %s: %v", redact(server), err)
	}
	dsn := create(t, tpl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	pool, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("postgrestest: %v", err)
	}
	// Registered after create's cleanup, so it runs before the drop.
	t.Cleanup(pool.Close)
	return postgres.New(pool, opts...), pool, dsn
}

func connect(ctx context.Context, t testing.TB, server string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		fatalUnreachable(t, server, err)
	}
	return conn
}

// unreachableError marks a failure to connect to the server at all, which
// gets the message naming the fix.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

func fatalUnreachable(t testing.TB, server string, err error) {
	t.Helper()
	t.Fatalf("postgrestest: cannot reach the test PostgreSQL server at %s: %v\n"+
		"Start one: `make test` starts a local cluster, or run `docker compose up -d postgres`,\n"+
		"or point %s at a server where this user may CREATE DATABASE.",
		redact(server), err, EnvURL)
}

func drop(t testing.TB, server, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Errorf("postgrestest: drop database %s: %v", name, err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("postgrestest: drop database %s: %v", name, err)
	}
}

func randomHex(t testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("postgrestest: %v", err)
	}
	return hex.EncodeToString(b)
}

// withDatabase points server, a URL or a keyword/value DSN, at database name.
func withDatabase(server, name string) (string, error) {
	if strings.HasPrefix(server, "postgres://") || strings.HasPrefix(server, "postgresql://") {
		u, err := url.Parse(server)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In keyword/value form the last setting of a keyword wins.
	return server + " dbname=" + name, nil
}

// redact hides the password of a URL-form DSN for messages.
func redact(server string) string {
	u, err := url.Parse(server)
	if err != nil || u.Scheme == "" {
		return "(" + EnvURL + ", not shown)"
	}
	return u.Redacted()
}
