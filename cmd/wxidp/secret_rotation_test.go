package main

import (
	"context"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretRotationKeepsSessions follows docs/keys.md "Rotating
// WXIDP_SECRETS": with the new secret prepended, refresh tokens and client
// secrets made under the old one keep working; start-up refuses to drop the
// old secret while a client secret still needs it, naming the clients; once
// they have new secrets and the refresh token has rotated, the old secret
// can go.
func TestSecretRotationKeepsSessions(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret := testSecret, strings.Repeat("B", 40)
	e := newLifecycleEnv(t)
	rt := e.loginTokens(t, "o-secret-rotation")["refresh_token"].(string)
	status, _, body := e.postToken(t, "other", e.otherSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
	if status != 200 {
		t.Fatalf("client_credentials: %d %v", status, body)
	}
	at := body["access_token"].(string)
	e.stop()

	restart := func(secrets string) *lifecycleEnv {
		t.Helper()
		cfg := testConfig(e.dsn)
		cfg.Secrets = secrets
		cfg.WeChatAPIBase = e.wx.URL
		return &lifecycleEnv{
			wechatEnv: &wechatEnv{server: startServer(t, cfg), wx: e.wx, pool: e.pool, dsn: e.dsn},
			rsSecret:  e.rsSecret, otherSecret: e.otherSecret,
		}
	}
	rotating := restart(newSecret + "," + oldSecret)
	// active() authenticates rs with the secret hashed under the old secret.
	if !rotating.active(t, rt) {
		t.Fatal("a refresh token minted under the old secret introspects inactive")
	}
	if !rotating.active(t, at) {
		t.Fatal("an access token issued before the rotation introspects inactive")
	}
	status, body = rotating.refresh(t, rt)
	if status != 200 {
		t.Fatalf("refresh of a token minted under the old secret: %d %v", status, body)
	}
	rt = body["refresh_token"].(string)
	if status, _, body := rotating.postToken(t, "other", e.otherSecret, url.Values{"grant_type": {"client_credentials"}}); status != 200 {
		t.Fatalf("client secret hashed under the old secret: %d %v", status, body)
	}
	rotating.stop()

	// Sealed values move on their own; client-secret hashes cannot.
	if err := runReencrypt(context.Background(), e.dsn, newSecret+","+oldSecret, io.Discard); err != nil {
		t.Fatal(err)
	}
	early := testConfig(e.dsn)
	early.Secrets = newSecret
	err := runServe(context.Background(), early, io.Discard, quietLog())
	// "mp" is a public client: it has no secret to re-key.
	if err == nil || !strings.Contains(err.Error(), "client secrets of other, rs") {
		t.Fatalf("start-up without the secret that hashed client secrets: %v, want clients other, rs named", err)
	}
	if strings.Contains(err.Error(), "lacks a secret still in use") {
		t.Errorf("sealed values were re-encrypted, yet start-up names them: %v", err)
	}

	// The documented way out: new client secrets, then drop the old secret.
	rotating = restart(newSecret + "," + oldSecret)
	newSecrets := map[string]string{"rs": strings.Repeat("r", 40), "other": strings.Repeat("o", 40)}
	for id, secret := range newSecrets {
		file := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		root := newRootCmd()
		root.SetOut(io.Discard)
		root.SetArgs([]string{"clients", "update", id, "--endpoint", rotating.admin, "--token", testAdminToken, "--secret-file", file})
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("clients update %s: %v", id, err)
		}
	}
	rotating.stop()
	after := restart(newSecret)
	after.rsSecret = newSecrets["rs"]
	if !after.active(t, rt) {
		t.Fatal("a refresh token minted during the rotation introspects inactive under the new secret alone")
	}
	if status, body := after.refresh(t, rt); status != 200 {
		t.Fatalf("refresh under the new secret alone: %d %v", status, body)
	}
	if status, _, body := after.postToken(t, "other", newSecrets["other"], url.Values{"grant_type": {"client_credentials"}}); status != 200 {
		t.Fatalf("new client secret under the new secret alone: %d %v", status, body)
	}
}
