package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/keys"
)

// TestSecretRotation: with a new secret first, `secrets reencrypt` moves
// every stored secret to it; then the old secret can go and everything —
// signing key, WeChat app secret, session keys, the app access token —
// still works.
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret := testSecret, strings.Repeat("N", 40)
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	status, _, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-sec", ""), "scope", "openid phone",
		"phone_code", e.wx.PhoneCode("wxapp1", "13800138000"))
	if status != 200 {
		t.Fatalf("login: %d %v", status, body)
	}
	kidBefore := kids(fetchJWKS(t, e.issuer))
	e.stop()

	// Dropping the old secret before re-encrypting is refused at start-up,
	// naming what still needs it.
	early := testConfig(e.dsn)
	early.Secrets = newSecret
	err := runServe(context.Background(), early, io.Discard, quietLog())
	for _, kind := range []string{"signing_key", "wechat_app_secret", "wechat_session_key", "wechat_access_token"} {
		if err == nil || !strings.Contains(err.Error(), kind) {
			t.Fatalf("start-up without the old secret: %v, want %s named", err, kind)
		}
	}

	var out bytes.Buffer
	if err := runReencrypt(context.Background(), e.dsn, newSecret+","+oldSecret, &out); err != nil {
		t.Fatalf("reencrypt: %v", err)
	}
	// Two keys, one app secret, one session key, one app access token.
	if !strings.Contains(out.String(), "re-encrypted 5 values") {
		t.Fatalf("reencrypt output: %q", out.String())
	}
	out.Reset()
	if err := runReencrypt(context.Background(), e.dsn, newSecret+","+oldSecret, &out); err != nil || !strings.Contains(out.String(), "re-encrypted 0 values") {
		t.Fatalf("second run should find nothing to do: %v %q", err, out.String())
	}

	cfg := testConfig(e.dsn)
	cfg.Secrets = newSecret
	cfg.WeChatAPIBase = e.wx.URL
	srv := startServer(t, cfg)
	if got := kids(fetchJWKS(t, srv.issuer)); strings.Join(got, ",") != strings.Join(kidBefore, ",") {
		t.Fatalf("keys changed: %v -> %v", kidBefore, got)
	}
	after := &wechatEnv{server: srv, wx: e.wx, pool: e.pool, dsn: e.dsn}
	status, _, body = after.login(t, "mp", e.wx.Login("wxapp1", "o-sec", ""), "scope", "openid phone",
		"phone_code", e.wx.PhoneCode("wxapp1", "13900139000"))
	if status != 200 {
		t.Fatalf("login with only the new secret: %d %v", status, body)
	}
	if e.wx.TokensIssued("wxapp1") != 1 {
		t.Error("the stored app access token was not usable after re-encryption")
	}
}

// TestCorruptedCiphertext: a damaged stored key stops start-up with a clear
// error naming the key, and `secrets reencrypt` reports it; no panic.
func TestCorruptedCiphertext(t *testing.T) {
	t.Parallel()
	e := newWeChatEnv(t)
	e.stop()
	if _, err := e.pool.Exec(context.Background(),
		`UPDATE signing_keys SET private_key = overlay(private_key placing '\xffff'::bytea from 20) WHERE state = 'active'`); err != nil {
		t.Fatal(err)
	}
	err := runServe(context.Background(), testConfig(e.dsn), io.Discard, quietLog())
	if !errors.Is(err, keys.ErrUndecryptable) || !strings.Contains(err.Error(), "signing key") {
		t.Fatalf("start-up with a corrupted key: %v", err)
	}
	err = runReencrypt(context.Background(), e.dsn, strings.Repeat("N", 40)+","+testSecret, io.Discard)
	if !errors.Is(err, keys.ErrUndecryptable) || !strings.Contains(err.Error(), "signing_key") {
		t.Fatalf("reencrypt over a corrupted key: %v", err)
	}
}

// TestStartupReencrypts: a server started with a new secret first moves
// every stored secret to it on its own; the old secret can then go.
func TestStartupReencrypts(t *testing.T) {
	t.Parallel()
	newSecret := strings.Repeat("M", 36)
	e := newWeChatEnv(t)
	e.miniProgram(t, "mp", "wxapp1")
	if status, _, body := e.login(t, "mp", e.wx.Login("wxapp1", "o-start", "")); status != 200 {
		t.Fatalf("login: %d %v", status, body)
	}
	e.stop()

	cfg := testConfig(e.dsn)
	cfg.Secrets = newSecret + "," + testSecret
	cfg.WeChatAPIBase = e.wx.URL
	rotating := startServer(t, cfg)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(rotating.logs.String(), "re-encrypted stored secrets") {
		if time.Now().After(deadline) {
			t.Fatalf("no re-encryption at start-up:\n%s", rotating.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rotating.stop()

	cfg.Secrets = newSecret
	srv := startServer(t, cfg)
	after := &wechatEnv{server: srv, wx: e.wx}
	if status, _, body := after.login(t, "mp", e.wx.Login("wxapp1", "o-start", "")); status != 200 {
		t.Fatalf("login with only the new secret: %d %v", status, body)
	}
}
