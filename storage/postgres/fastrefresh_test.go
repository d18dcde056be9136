package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/postgres"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// rotate runs s.RotateAndIssue for the refresh token presented of req's
// grant, issuing access token at and refresh token rt as a refresh does.
func rotate(ctx context.Context, s *postgres.Store, req fosite.Requester, presented, at, rt string) (bool, error) {
	return s.RotateAndIssue(ctx, req.GetID(), presented, func(ctx context.Context) error {
		if err := s.CreateAccessTokenSession(ctx, at, req); err != nil {
			return err
		}
		return s.CreateRefreshTokenSession(ctx, rt, at, req)
	})
}

// tokenState tells what a refresh token is now: "active", "inactive" or
// "absent"; and whether access token at is stored.
func tokenState(t *testing.T, s *postgres.Store, rt, at string) (string, bool) {
	t.Helper()
	ctx := context.Background()
	state := "active"
	_, err := s.GetRefreshTokenSession(ctx, rt, openid.NewDefaultSession())
	switch {
	case errors.Is(err, fosite.ErrInactiveToken):
		state = "inactive"
	case errors.Is(err, fosite.ErrNotFound):
		state = "absent"
	case err != nil:
		t.Fatalf("refresh token %s: %v", rt, err)
	}
	_, err = s.GetAccessTokenSession(ctx, at, openid.NewDefaultSession())
	if err != nil && !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("access token %s: %v", at, err)
	}
	return state, err == nil
}

// TestRotateAndIssue: a refresh's rotation and its new tokens are one
// statement with the rotation's rules (RotateRefreshToken's): only an
// active token rotates, and only once however many present it at once; a
// refused rotation writes nothing; a statement that fails is "not written",
// for fosite's transactional path to decide. Refreshes of many grants at
// once share round trips.
func TestRotateAndIssue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rt := tracedStore(t)
	req := seedGrant(t, s)

	if written, err := rotate(ctx, s, req, "rt0", "at1", "rt1"); err != nil || !written {
		t.Fatalf("rotating rt0: written %v, %v", written, err)
	}
	if st, _ := tokenState(t, s, "rt0", "at0"); st != "inactive" {
		t.Errorf("the presented token is %s after its rotation, want inactive", st)
	}
	if _, at0 := tokenState(t, s, "rt0", "at0"); at0 {
		t.Error("the access token issued with the presented token survived its rotation")
	}
	if st, at1 := tokenState(t, s, "rt1", "at1"); st != "active" || !at1 {
		t.Errorf("the new tokens: refresh %s, access stored %v; want active, true", st, at1)
	}

	// Refused, nothing written: a rotated token, another grant's ID.
	for name, c := range map[string]struct{ grant, presented string }{
		"rotated token": {"grant-1", "rt0"},
		"another grant": {"grant-2", "rt1"},
		"unknown token": {"grant-1", "rt-404"},
	} {
		r := *req
		r.ID = c.grant
		at := "at-" + name
		if written, err := rotate(ctx, s, &r, c.presented, at, "rt-"+name); written || !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("%s: written %v, %v; want fosite.ErrNotFound", name, written, err)
		}
		if st, stored := tokenState(t, s, "rt-"+name, at); st != "absent" || stored {
			t.Errorf("%s: a refused rotation stored tokens (%s, %v)", name, st, stored)
		}
	}
	if st, _ := tokenState(t, s, "rt1", "at1"); st != "active" {
		t.Errorf("rt1 after refused rotations: %s, want active", st)
	}

	// A failing statement (its access token already stored) wrote
	// nothing and is no answer of its own.
	if written, err := rotate(ctx, s, req, "rt1", "at1", "rt-dup"); written || err != nil {
		t.Errorf("rotation whose statement fails: written %v, %v; want not written, no error", written, err)
	}
	if st, _ := tokenState(t, s, "rt1", "at1"); st != "active" {
		t.Errorf("rt1 after a failed statement: %s, want still active", st)
	}

	// Concurrent rotations of several grants, one of whose statements
	// fails: the others are written (one by one if they were batched with
	// it), that one is "not written".
	client := &storage.Client{ID: "mp"}
	mixed := make([]*fosite.Request, 8)
	for i := range mixed {
		mixed[i] = grantRequest(client, fmt.Sprintf("grant-mixed-%d", i))
		if err := s.CreateRefreshTokenSession(ctx, fmt.Sprintf("rt-mixed-%d", i), "", mixed[i]); err != nil {
			t.Fatal(err)
		}
	}
	checkConcurrent(t, len(mixed), func(i int) error {
		at := fmt.Sprintf("at-mixed-%d", i)
		if i == 0 {
			at = "at1" // already stored: the statement fails
		}
		written, err := rotate(ctx, s, mixed[i], fmt.Sprintf("rt-mixed-%d", i), at, fmt.Sprintf("rt-mixed-%d-1", i))
		if err != nil || written != (i != 0) {
			return fmt.Errorf("mixed rotation %d: written %v, %v", i, written, err)
		}
		return nil
	})
	for i := range mixed {
		st, _ := tokenState(t, s, fmt.Sprintf("rt-mixed-%d", i), "-")
		if want := map[bool]string{true: "active", false: "inactive"}[i == 0]; st != want {
			t.Errorf("mixed rotation %d: the presented token is %s, want %s", i, st, want)
		}
	}

	// One token presented many times at once rotates once.
	const racers = 20
	var wins sync.Map
	checkConcurrent(t, racers, func(i int) error {
		at := fmt.Sprintf("at-race-%d", i)
		written, err := rotate(ctx, s, req, "rt1", at, "rt-race-"+at[8:])
		switch {
		case written && err == nil:
			wins.Store(i, true)
		case !errors.Is(err, fosite.ErrNotFound):
			return fmt.Errorf("racer %d: written %v, %v; want a win or fosite.ErrNotFound", i, written, err)
		}
		return nil
	})
	n := 0
	for i := range racers {
		st, stored := tokenState(t, s, fmt.Sprintf("rt-race-%d", i), fmt.Sprintf("at-race-%d", i))
		_, won := wins.Load(i)
		if won {
			n++
		}
		if (st == "active") != won || stored != won {
			t.Errorf("racer %d (won %v): refresh %s, access stored %v", i, won, st, stored)
		}
	}
	if n != 1 {
		t.Errorf("%d of %d rotations of one token won, want 1", n, racers)
	}

	// Many grants at once.
	const grants = 64
	reqs := make([]*fosite.Request, grants)
	for i := range grants {
		reqs[i] = grantRequest(client, fmt.Sprintf("grant-many-%d", i))
		if err := s.CreateRefreshTokenSession(ctx, fmt.Sprintf("rt-many-%d", i), "", reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	checkBatched(t, rt, grants, func(i int) error {
		written, err := rotate(ctx, s, reqs[i], fmt.Sprintf("rt-many-%d", i), fmt.Sprintf("at-many-%d", i), fmt.Sprintf("rt-many-%d-1", i))
		if err != nil || !written {
			return fmt.Errorf("refresh %d: written %v, %v", i, written, err)
		}
		return nil
	})
	for i := range grants {
		if st, stored := tokenState(t, s, fmt.Sprintf("rt-many-%d-1", i), fmt.Sprintf("at-many-%d", i)); st != "active" || !stored {
			t.Errorf("refresh %d: new tokens %s, %v", i, st, stored)
		}
	}
}

// TestRotateAndIssueGrace: within the grace period a rotated token rotates
// once more (the client lost the first answer), deleting nothing the first
// rotation issued; a third use is refused. A grace use undone gives the
// grace back.
func TestRotateAndIssueGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, _ := postgrestest.NewStore(t, postgres.WithRefreshGrace(time.Minute))
	req := seedGrant(t, s)
	for i, want := range []error{nil, nil, fosite.ErrNotFound} {
		at := fmt.Sprintf("at%d", i+1)
		written, err := rotate(ctx, s, req, "rt0", at, fmt.Sprintf("rt%d", i+1))
		if written != (want == nil) || !errors.Is(err, want) {
			t.Errorf("use %d of rt0: written %v, %v; want %v", i+1, written, err, want)
		}
	}
	for _, tok := range []string{"1", "2"} {
		if st, stored := tokenState(t, s, "rt"+tok, "at"+tok); st != "active" || !stored {
			t.Errorf("tokens of rotation %s: refresh %s, access stored %v; want both kept", tok, st, stored)
		}
	}

	// A grace use whose caller gave up is undone: the grace is back, the
	// rotation before it stands.
	if written, err := rotate(ctx, s, req, "rt1", "at4", "rt4"); err != nil || !written {
		t.Fatalf("rotating rt1: written %v, %v", written, err)
	}
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT 1 FROM oauth2_refresh_tokens WHERE signature = 'rt1' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	written, err := rotate(short, s, req, "rt1", "at5", "rt5")
	cancel()
	if written || !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("grace use whose caller gave up: written %v, %v; want ErrUnavailable", written, err)
	}
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitActive(t, s, "rt1") // in its grace again
	if st, stored := tokenState(t, s, "rt5", "at5"); st != "absent" || stored {
		t.Errorf("tokens of the undone grace use: refresh %s, access stored %v; want both gone", st, stored)
	}
	if st, stored := tokenState(t, s, "rt4", "at4"); st != "active" || !stored {
		t.Errorf("tokens of the rotation before: refresh %s, access stored %v; want both kept", st, stored)
	}
	for i, want := range []error{nil, fosite.ErrNotFound} {
		at := fmt.Sprintf("at%d", 6+i)
		if written, err := rotate(ctx, s, req, "rt1", at, fmt.Sprintf("rt%d", 6+i)); written != (want == nil) || !errors.Is(err, want) {
			t.Errorf("use %d of rt1 after the undo: written %v, %v; want %v", i+2, written, err, want)
		}
	}
}

// TestRotateAndIssueRaces: refreshes racing a disable or an erasure of
// their user leave no token of the user behind once it has returned, and
// neither side fails but as a refusal.
func TestRotateAndIssueRaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, _ := postgrestest.NewStore(t)
	client := &storage.Client{ID: "mp"}
	if err := s.CreateClient(ctx, client); err != nil {
		t.Fatal(err)
	}
	for name, op := range disableOrErase(ctx, s) {
		for round := range 4 {
			openID := fmt.Sprintf("o-%s-%d", name, round)
			user, err := s.LinkWeChatIdentity(ctx, &storage.WeChatIdentity{AppID: "wxa", OpenID: openID}, "user-"+openID)
			if err != nil {
				t.Fatal(err)
			}
			const refreshes = 16
			reqs := make([]*fosite.Request, refreshes)
			for i := range reqs {
				reqs[i] = grantRequest(client, fmt.Sprintf("grant-%s-%d-%d", name, round, i))
				reqs[i].Session.(*openid.DefaultSession).Subject = user.ID
				if err := s.CreateRefreshTokenSession(ctx, "rt0-"+reqs[i].ID, "", reqs[i]); err != nil {
					t.Fatal(err)
				}
			}
			checkConcurrent(t, refreshes+1, func(i int) error {
				if i == refreshes {
					return op(user.ID)
				}
				r := reqs[i]
				_, err := rotate(ctx, s, r, "rt0-"+r.ID, "at1-"+r.ID, "rt1-"+r.ID)
				if err != nil && !errors.Is(err, fosite.ErrNotFound) && !errors.Is(err, storage.ErrUserDisabled) {
					return fmt.Errorf("refresh %d: %v", i, err)
				}
				return nil
			})
			if left := tokensLeft(t, pool, user.ID); left != 0 {
				t.Errorf("%s, round %d: %d tokens of the user left", name, round, left)
			}
		}
	}
}

// TestRotateAndIssueCallerGone: a caller that stops waiting (its request
// ended) answers unavailable, so its client keeps the token it presented;
// the rotation, committed after it left, is undone, and until then the
// token reads as unavailable, never as reused.
func TestRotateAndIssueCallerGone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, _ := postgrestest.NewStore(t)
	req := seedGrant(t, s)

	// Hold the presented token's row so the rotation waits.
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT 1 FROM oauth2_refresh_tokens WHERE signature = 'rt0' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	written, err := rotate(short, s, req, "rt0", "at1", "rt1")
	cancel()
	if written || !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("rotation whose caller gave up: written %v, %v; want ErrUnavailable", written, err)
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt0", openid.NewDefaultSession()); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("rt0 while its rotation is unsettled: %v, want ErrUnavailable", err)
	}
	if err := lock.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitActive(t, s, "rt0")
	if st, stored := tokenState(t, s, "rt1", "at1"); st != "absent" || stored {
		t.Errorf("tokens no answer handed out: refresh %s, access stored %v; want both gone", st, stored)
	}
	if written, err := rotate(ctx, s, req, "rt0", "at2", "rt2"); err != nil || !written {
		t.Errorf("rotating rt0 again: written %v, %v", written, err)
	}
}

// waitActive waits until refresh token rt reads as active, allowing
// ErrUnavailable while its rotation is settled.
func waitActive(t *testing.T, s *postgres.Store, rt string) {
	t.Helper()
	waitSettled(t, "refresh token "+rt, func() error {
		_, err := s.GetRefreshTokenSession(context.Background(), rt, openid.NewDefaultSession())
		return err
	})
}

// waitSettled waits until read succeeds, allowing ErrUnavailable while
// what is settled (unsettled.go).
func waitSettled(t *testing.T, what string, read func() error) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := read()
		if err == nil {
			return
		}
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("%s: %v, want it usable (or unavailable while settling)", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still unavailable after 30 s: %v", what, err)
		}
	}
}

// TestBatchedWritesBoundLockWaits: a batched statement that waits on a row
// lock (held here by another transaction; in life a revocation or an
// erasure that takes long) gives up well inside the store's deadline and is
// "not written", for the transactional path to decide, instead of failing
// its whole batch as an outage (503 for every caller in it). Refreshes and
// returning logins alike.
func TestBatchedWritesBoundLockWaits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, pool, _ := postgrestest.NewStore(t, postgres.WithTimeout(2*time.Second))
	req := seedGrant(t, s)
	id := &storage.WeChatIdentity{AppID: "wxa", OpenID: "o-locked", SessionKey: []byte("k")}
	user, err := s.LinkWeChatIdentity(ctx, id, "user-locked")
	if err != nil {
		t.Fatal(err)
	}
	client := &storage.Client{ID: "mp"}
	others := make([]*fosite.Request, 8)
	for i := range others {
		others[i] = grantRequest(client, fmt.Sprintf("grant-other-%d", i))
		if err := s.CreateRefreshTokenSession(ctx, fmt.Sprintf("rt-other-%d", i), "", others[i]); err != nil {
			t.Fatal(err)
		}
	}

	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(ctx) //nolint:errcheck // released at the end either way
	if _, err := lock.Exec(ctx, `SELECT 1 FROM oauth2_refresh_tokens WHERE signature = 'rt0' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT 1 FROM wechat_identities WHERE open_id = 'o-locked' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	checkConcurrent(t, 2+len(others), func(i int) error {
		switch i {
		case 0:
			if written, err := rotate(ctx, s, req, "rt0", "at1", "rt1"); written || err != nil {
				return fmt.Errorf("refresh of a locked token: written %v, %v; want not written, no error", written, err)
			}
		case 1:
			id := &storage.WeChatIdentity{AppID: "wxa", OpenID: "o-locked", SessionKey: []byte("k1")}
			if written, err := returningLogin(ctx, s, client, id, user, "at-locked", "rt-locked"); written || err != nil {
				return fmt.Errorf("login of a locked identity: written %v, %v; want not written, no error", written, err)
			}
		default:
			r := others[i-2]
			if written, err := rotate(ctx, s, r, "rt-other-"+r.ID[12:], "at1-"+r.ID, "rt1-"+r.ID); !written || err != nil {
				return fmt.Errorf("refresh %s beside them: written %v, %v", r.ID, written, err)
			}
		}
		return nil
	})
}
