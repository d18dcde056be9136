package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// outageStore returns a store whose every connection goes through a proxy
// the test can cut or hang, with a short deadline.
func outageStore(t *testing.T, timeout time.Duration) (*postgres.Store, *postgrestest.Proxy) {
	t.Helper()
	_, _, dsn := postgrestest.NewStore(t)
	proxy, via := postgrestest.NewProxy(t, dsn)
	pool, err := postgres.OpenTimeout(context.Background(), via, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return postgres.New(pool, postgres.WithTimeout(timeout)), proxy
}

// storeCalls are one call of each shape: a row read, a multi-row read, a
// write, a transaction of our own, and a fosite transaction.
func storeCalls(s *postgres.Store) map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"lookup": func(ctx context.Context) error {
			_, err := s.LookupClient(ctx, "nobody")
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		},
		"list": func(ctx context.Context) error { _, err := s.ListClients(ctx); return err },
		"create": func(ctx context.Context) error {
			return s.CreateClient(ctx, &storage.Client{ID: "c-" + time.Now().Format("150405.000000000")})
		},
		"link": func(ctx context.Context) error {
			_, err := s.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{AppID: "wxapp", OpenID: "o-" + time.Now().Format("150405.000000000")}, "u-"+time.Now().Format("150405.000000000"))
			return err
		},
		// The batched calls: a wx.login code claim and a refresh-token lookup.
		"claim": func(ctx context.Context) error {
			return s.ClaimWeChatCode(ctx, "wxapp", "code-"+time.Now().Format("150405.000000000"), time.Now().Add(10*time.Minute))
		},
		"refresh lookup": func(ctx context.Context) error {
			_, err := s.GetRefreshTokenSession(ctx, "nothing", nil)
			if errors.Is(err, fosite.ErrNotFound) {
				return nil
			}
			return err
		},
		// An authorization code exchange's reads and deletes outside its
		// transaction, batched too.
		"code lookup": func(ctx context.Context) error {
			_, err := s.GetAuthorizeCodeSession(ctx, "nothing", nil)
			if errors.Is(err, fosite.ErrNotFound) {
				return nil
			}
			return err
		},
		"oidc lookup": func(ctx context.Context) error {
			_, err := s.GetOpenIDConnectSession(ctx, "nothing", nil)
			if errors.Is(err, fosite.ErrNotFound) {
				return nil
			}
			return err
		},
		"oidc delete": func(ctx context.Context) error { return s.DeleteOpenIDConnectSession(ctx, "nothing") },
		// A returning login's read and write, batched too.
		"returning user": func(ctx context.Context) error {
			_, err := s.ReturningUser(ctx, &storage.WeChatIdentity{AppID: "wxapp", OpenID: "nobody"})
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			return err
		},
		"returning login": func(ctx context.Context) error {
			req := grantRequest(&storage.Client{ID: "mp"}, "grant-"+time.Now().Format("150405.000000000"))
			_, err := s.ReturningLogin(ctx, &storage.WeChatIdentity{AppID: "wxapp", OpenID: "nobody"}, &storage.User{ID: "nobody"},
				func(ctx context.Context) error { return s.CreateAccessTokenSession(ctx, "at-"+req.ID, req) })
			return err
		},
		// A refresh rotation made with its tokens, batched too.
		"rotate and issue": func(ctx context.Context) error {
			req := grantRequest(&storage.Client{ID: "mp"}, "grant-"+time.Now().Format("150405.000000000"))
			_, err := rotate(ctx, s, req, "rt0-"+req.ID, "at-"+req.ID, "rt-"+req.ID) // unknown, and unsettled after an outage
			if errors.Is(err, fosite.ErrNotFound) {
				return nil
			}
			return err
		},
		// A code exchange made with its tokens, batched too.
		"exchange and issue": func(ctx context.Context) error {
			req := grantRequest(&storage.Client{ID: "mp"}, "grant-"+time.Now().Format("150405.000000000"))
			_, err := exchange(ctx, s, req, "code-"+req.ID, "at-"+req.ID, "rt-"+req.ID) // unknown
			if errors.Is(err, fosite.ErrNotFound) {
				return nil
			}
			return err
		},
		// BEGIN goes with a transaction's first statement.
		"begin": func(ctx context.Context) error {
			tx, err := s.BeginTX(ctx)
			if err != nil {
				return err
			}
			_, err = s.GetClient(tx, "nobody")
			if errors.Is(err, fosite.ErrNotFound) {
				err = nil
			}
			return errors.Join(err, s.Rollback(tx))
		},
		"ping": s.Ping,
	}
}

// TestStoreOutage: a database that is gone or hung is ErrUnavailable, in
// bounded time, for every kind of call, and the same store serves again
// when it is back (no restart, no new pool).
func TestStoreOutage(t *testing.T) {
	t.Parallel()
	// Long enough for the first call after a hang, which dials a new
	// connection, to finish on a loaded machine (300 ms failed under the
	// whole suite with -race).
	const timeout = 600 * time.Millisecond
	s, proxy := outageStore(t, timeout)
	calls := storeCalls(s)
	ctx := context.Background()

	check := func(phase string, wantErr bool) {
		t.Helper()
		for name, call := range calls {
			start := time.Now()
			err := call(ctx)
			if !wantErr && errors.Is(err, storage.ErrUnavailable) {
				// Once back, a call may still meet the outage's tail: the
				// first one dials and prepares anew, which under the whole
				// suite with -race has outlasted the deadline. The next
				// must succeed.
				start = time.Now()
				err = call(ctx)
			}
			took := time.Since(start)
			if !wantErr && err != nil {
				t.Errorf("%s: %s: %v", phase, name, err)
			}
			if wantErr && !errors.Is(err, storage.ErrUnavailable) {
				t.Errorf("%s: %s: got %v, want storage.ErrUnavailable", phase, name, err)
			}
			// The deadline, plus pgx's wait for the connection to close.
			if took > timeout+2*time.Second {
				t.Errorf("%s: %s took %v with a %v deadline", phase, name, took, timeout)
			}
		}
	}
	check("up", false)
	proxy.Down()
	check("down", true)
	proxy.Up()
	check("back after down", false)
	proxy.Hang()
	check("hung", true)
	proxy.Up()
	check("back after hang", false)
}

// TestStoreCallerCancelIsNotOutage: a caller that went away is not a
// database outage (it must not be answered or counted as one).
func TestStoreCallerCancelIsNotOutage(t *testing.T) {
	t.Parallel()
	s, proxy := outageStore(t, 5*time.Second)
	proxy.Hang()
	t.Cleanup(proxy.Up) // before the pool closes: closing waits on hung connections
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err := s.LookupClient(ctx, "nobody")
	if !errors.Is(err, context.Canceled) || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("got %v, want context.Canceled and not ErrUnavailable", err)
	}
}

// TestStoreFailFast: in a storage.FailFast context, once a call met the
// outage, later calls fail at once instead of each waiting out a deadline
// (a request with several lookups answers after one deadline, not many).
func TestStoreFailFast(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	s, proxy := outageStore(t, timeout)
	proxy.Hang()
	t.Cleanup(proxy.Up)
	ctx := storage.FailFast(context.Background())
	if _, err := s.LookupClient(ctx, "nobody"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("first call: %v, want ErrUnavailable", err)
	}
	for name, call := range storeCalls(s) {
		start := time.Now()
		if err := call(ctx); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s after the outage was met: %v, want ErrUnavailable", name, err)
		}
		if took := time.Since(start); took > timeout/2 {
			t.Errorf("%s after the outage was met took %v, want at once", name, took)
		}
	}
	// Another request's context still tries the database.
	proxy.Up()
	if _, err := s.ListClients(storage.FailFast(context.Background())); err != nil {
		t.Errorf("a new request after the database came back: %v", err)
	}
}

// TestBatchedCallsOutageBacklog: when the database hangs, a backlog of
// batched calls is answered ErrUnavailable after about one deadline, not one
// deadline per batch in turn (a request carries no deadline of its own).
func TestBatchedCallsOutageBacklog(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	s, proxy := outageStore(t, timeout)
	ctx := context.Background()
	calls := map[string]func(i int) error{
		"refresh lookup": func(i int) error {
			_, err := s.GetRefreshTokenSession(ctx, fmt.Sprintf("rt-%d", i), nil)
			return err
		},
		"returning user": func(i int) error {
			_, err := s.ReturningUser(ctx, &storage.WeChatIdentity{AppID: "wxapp", OpenID: fmt.Sprintf("o-%d", i)})
			return err
		},
		"claim": func(i int) error {
			return s.ClaimWeChatCode(ctx, "wxapp", fmt.Sprintf("backlog-%d", i), time.Now().Add(time.Minute))
		},
	}
	for name, call := range calls {
		_ = call(-1) // a connection, warm
		proxy.Hang()
		const n = 640 // ten full batches
		start := time.Now()
		var wg sync.WaitGroup
		var wrong atomic.Int32
		for i := range n {
			wg.Go(func() {
				if err := call(i); !errors.Is(err, storage.ErrUnavailable) {
					wrong.Add(1)
				}
			})
		}
		wg.Wait()
		took := time.Since(start)
		proxy.Up()
		if w := wrong.Load(); w > 0 {
			t.Errorf("%s: %d of %d calls did not answer ErrUnavailable", name, w, n)
		}
		if took > 3*timeout {
			t.Errorf("%s: %d calls took %v to fail with a %v deadline, want about one deadline", name, n, took, timeout)
		} else {
			t.Logf("%s: %d calls failed in %v", name, n, took)
		}
	}
}
