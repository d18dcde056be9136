package main

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestScanCodeRetriedAfterFailedExchange: a code exchange that could not
// finish in the database answers 503 with Retry-After, and the website's
// retry with the same code and verifier gets its tokens (and its ID token)
// once the database is through: nothing of the first attempt was used up.
// The database is held up by a real lock at each step an exchange takes
// after it checked the verifier: the write of the code and the tokens
// (the user's row, read-locked by the write, locked by a slow transaction
// elsewhere) and the OpenID Connect session's read (its table locked, as a
// migration would). The session's read and its delete used to come after
// the write: the 503 left the code used, and the retry was answered as a
// replay that revoked the tokens. The session's row is no longer deleted
// by the exchange (the janitor purges it), so a lock on it holds nothing
// up.
func TestScanCodeRetriedAfterFailedExchange(t *testing.T) {
	t.Parallel()
	const dbTimeout = 500 * time.Millisecond
	e := newScanEnv(t, nil, func(c *serveConfig) { c.DatabaseTimeout = dbTimeout })
	alice, sub := e.user(t, "o-alice")
	for name, c := range map[string]struct {
		lock string
		held bool // the exchange waits for the lock
	}{
		"write":       {`SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, true},
		"oidc read":   {`LOCK TABLE oauth2_oidc_sessions IN ACCESS EXCLUSIVE MODE`, true},
		"oidc delete": {`SELECT 1 FROM oauth2_oidc_sessions WHERE subject = $1 FOR UPDATE`, false},
	} {
		t.Run(name, func(t *testing.T) {
			a, code := e.scannedCode(t, alice)

			ctx := context.Background()
			tx, err := e.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			args := []any{sub}
			if name == "oidc read" {
				args = nil
			}
			if _, err := tx.Exec(ctx, c.lock, args...); err != nil {
				t.Fatal(err)
			}
			if !c.held {
				e.exchange(t, code, a)
				return
			}
			before := webTokens(t, e)
			start := time.Now()
			_, err = e.web.Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable || re.Response.Header.Get("Retry-After") == "" {
				t.Fatalf("exchange while held up: %v, want 503 with Retry-After", err)
			}
			if took := time.Since(start); took > 4*dbTimeout+2*time.Second {
				t.Errorf("the 503 took %v", took)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if after := webTokens(t, e); after != before {
				t.Errorf("the exchange answered 503 stored %d tokens", after-before)
			}

			tok, _, claims := e.exchange(t, code, a) // fails the test without a verified ID token
			if claims["sub"] != sub || tok.RefreshToken == "" {
				t.Fatalf("retried exchange: sub %v, refresh token %t", claims["sub"], tok.RefreshToken != "")
			}
			if _, err := e.web.Exchange(ctx, code, oauth2.VerifierOption(a.verifier)); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Fatalf("replayed code: %v, want invalid_grant", err)
			}
		})
	}
}

// webTokens counts the access and refresh tokens of the website client.
func webTokens(t *testing.T, e *scanEnv) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM oauth2_access_tokens WHERE client_id = 'web')
		+ (SELECT count(*) FROM oauth2_refresh_tokens WHERE client_id = 'web')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
