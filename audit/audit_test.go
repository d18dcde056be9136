package audit_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/storage"
	"github.com/wxidp/wxidp/storage/memory"
	"github.com/wxidp/wxidp/storage/postgres/postgrestest"
)

// The recorder stamps each event with the request ID and source the web
// layer put in the context, and still records after the request's context
// is cancelled (the client hung up once the action was done).
func TestRecorderFillsFromContext(t *testing.T) {
	t.Parallel()
	store := memory.New()
	rec := audit.NewRecorder(store, nil)
	ctx, cancel := context.WithCancel(audit.WithRequest(t.Context(), "rid-1", "198.51.100.7"))
	cancel()
	rec.RefreshReuse(ctx, "mp", "chain-1", true)
	rec.Lockout(ctx, "svc", "203.0.113.9")
	rec.WeChatRiskRefused(context.Background(), "mp", "wxapp")

	got, err := store.ListAudit(t.Context(), storage.AuditFilter{}, nil, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("events: %v %+v", err, got)
	}
	for _, c := range []struct {
		e                                                 storage.AuditEvent
		typ, actor, source, rid, target, outcome, details string
	}{
		{got[2], "refresh_token.reused", "client:mp", "198.51.100.7", "rid-1", "mp", "revoked", "chain-1"},
		{got[1], "auth.lockout", "anonymous", "198.51.100.7", "rid-1", "svc", "denied", "203.0.113.9"},
		{got[0], "wechat.risk_refused", "client:mp", "", "", "mp", "denied", "wxapp"},
	} {
		e := c.e
		if e.Type != c.typ || e.Actor != c.actor || e.Source != c.source || e.RequestID != c.rid ||
			e.Target != c.target || e.Outcome != c.outcome || e.Time.IsZero() {
			t.Errorf("event %+v, want %s by %s from %q (%q) on %s: %s", e, c.typ, c.actor, c.source, c.rid, c.target, c.outcome)
		}
		if c.details != "" && !strings.Contains(strings.Join(mapValues(e.Details), " "), c.details) {
			t.Errorf("%s details %v, want %s", c.typ, e.Details, c.details)
		}
	}
	if !audit.RefreshTokenReused.Known() || audit.Type("client.exploded").Known() {
		t.Error("Known misjudges the types")
	}
}

// A store that fails does not fail the caller: the event is logged, with
// its (non-secret) fields, instead. A nil recorder records nothing.
func TestRecorderFailureIsLogged(t *testing.T) {
	t.Parallel()
	s, pool, _ := postgrestest.NewStore(t)
	pool.Close() // every append now fails as unavailable
	var logs bytes.Buffer
	rec := audit.NewRecorder(s, slog.New(slog.NewJSONHandler(&logs, nil)))
	rec.Record(audit.WithRequest(t.Context(), "rid-2", "192.0.2.1"), audit.Event{
		Type: audit.KeyRevoked, Actor: audit.ActorCLI, Target: "kid-1", Outcome: audit.Success,
	})
	for _, want := range []string{`"msg":"audit event not stored"`, `"type":"key.revoked"`, `"target":"kid-1"`, `"request_id":"rid-2"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %s lacks %s", logs.String(), want)
		}
	}
	var none *audit.Recorder
	none.Lockout(t.Context(), "svc", "192.0.2.1") // must not panic
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Values from request input are bounded before they reach the store or the
// log: a 10 kB client_id with invalid UTF-8 and a NUL (a lockout's target
// is the client_id as sent) is stored in PostgreSQL, cut to MaxValueLen,
// and a failed append logs no more of it.
func TestRecorderBoundsValues(t *testing.T) {
	t.Parallel()
	s, pool, _ := postgrestest.NewStore(t)
	long := "\x00\xff" + strings.Repeat("é", 5000)
	rec := audit.NewRecorder(s, nil)
	rec.Record(audit.WithRequest(t.Context(), strings.Repeat("r", 3000), "192.0.2.1"), audit.Event{
		Type: audit.AuthLockout, Actor: "anonymous", Target: long, Outcome: audit.Denied,
		Details: map[string]string{"k": long},
	})
	got, err := s.ListAudit(t.Context(), storage.AuditFilter{}, nil, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("events: %v %+v (a long target was not stored)", err, got)
	}
	e := got[0]
	for name, v := range map[string]string{"target": e.Target, "request_id": e.RequestID, "detail": e.Details["k"]} {
		if len(v) > audit.MaxValueLen || !strings.HasSuffix(v, "…") || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			t.Errorf("%s stored as %d bytes %q", name, len(v), v)
		}
	}

	pool.Close()
	var logs bytes.Buffer
	rec = audit.NewRecorder(s, slog.New(slog.NewJSONHandler(&logs, nil)))
	rec.Lockout(t.Context(), long, "192.0.2.1")
	if logs.Len() == 0 || logs.Len() > 2*audit.MaxValueLen+500 {
		t.Fatalf("failure log of %d bytes: %s", logs.Len(), logs.String())
	}
}
