package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// BenchmarkClientCredentialsToken measures the whole token endpoint over
// loopback HTTP against PostgreSQL; compare it with BenchmarkRSASign, the
// floor (one signature per token), run in the same invocation:
//
//	go test -run '^$' -bench 'ClientCredentials|RSASign' -cpu 2 ./cmd/wxidp/
func BenchmarkClientCredentialsToken(b *testing.B) {
	srv := startServer(b, testConfig(migratedDB(b)))
	secret := srv.registerClient(b, map[string]any{"client_id": "bench", "scope": "read"})
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}.Encode()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetParallelism(8) // 16 concurrent clients on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, srv.issuer+"/oauth2/token", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("bench", secret)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkRSASign is one RSA-2048 PKCS#1 v1.5 signature, in parallel.
func BenchmarkRSASign(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("header.payload"))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWeChatLogin measures the WeChat-code grant end to end over
// loopback HTTP: code claim, jscode2session at the fake WeChat, identity
// link, access + refresh + ID token (two signatures) in one transaction.
func BenchmarkWeChatLogin(b *testing.B) {
	dsn := migratedDB(b)
	wx := wechattest.NewServer(b)
	wx.AddApp("wxbench", "secret")
	cfg := testConfig(dsn)
	cfg.WeChatAPIBase = wx.URL
	srv := startServer(b, cfg)
	if status, body := srv.adminJSON(b, "POST", "/admin/clients", testAdminToken, map[string]any{
		"client_id": "mp", "token_endpoint_auth_method": "none", "scope": "openid offline_access",
		"wechat_appid": "wxbench", "wechat_app_secret": "secret",
	}); status != http.StatusCreated {
		b.Fatalf("register: %d %v", status, body)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// A few hundred users logging in again and again (returning users, as in production).
			code := wx.Login("wxbench", "o-"+strconv.FormatInt(n.Add(1)%200, 10), "")
			form := url.Values{"grant_type": {grants.WeChatCode}, "client_id": {"mp"}, "code": {code},
				"scope": {"openid offline_access"}}.Encode()
			req, _ := http.NewRequest(http.MethodPost, srv.issuer+"/oauth2/token", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkJWKS and BenchmarkIntrospection measure the two read paths
// resource servers hit, over loopback HTTP; with -cpuprofile they show
// what every request pays besides its own work (middleware, logging).
func BenchmarkJWKS(b *testing.B) {
	srv := startServer(b, testConfig(migratedDB(b)))
	benchParallel(b, func() *http.Request {
		req, _ := http.NewRequest(http.MethodGet, srv.issuer+"/.well-known/jwks.json", nil)
		return req
	})
}

func BenchmarkIntrospection(b *testing.B) {
	srv := startServer(b, testConfig(migratedDB(b)))
	secret := srv.registerClient(b, map[string]any{"client_id": "rs", "scope": "read"})
	status, _, tok := srv.postToken(b, "rs", secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
	if status != http.StatusOK {
		b.Fatalf("token: %d %v", status, tok)
	}
	form := url.Values{"token": {tok["access_token"].(string)}}.Encode()
	benchParallel(b, func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, srv.issuer+"/oauth2/introspect", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("rs", secret)
		return req
	})
}

func benchParallel(b *testing.B, newRequest func() *http.Request) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Do(newRequest())
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
