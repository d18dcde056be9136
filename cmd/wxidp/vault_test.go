package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// vaultEnv is a mini-program "mp" whose clients may ask for wechat_data,
// and one logged-in user, alice.
type vaultEnv struct {
	*wechatEnv
	token string // alice's access token with wechat_data
}

func newVaultEnv(t *testing.T, mutate ...func(*serveConfig)) *vaultEnv {
	t.Helper()
	e := &vaultEnv{wechatEnv: newWeChatEnv(t, mutate...)}
	e.wx.AddApp("wxapp1", "secret-of-wxapp1")
	for id, scope := range map[string]string{"mp": "openid offline_access wechat_data", "mp-plain": "openid"} {
		if status, body := e.adminJSON(t, "POST", "/admin/clients", testAdminToken, map[string]any{
			"client_id": id, "token_endpoint_auth_method": "none", "scope": scope,
			"wechat_appid": "wxapp1", "wechat_app_secret": "secret-of-wxapp1",
		}); status != http.StatusCreated {
			t.Fatalf("register %s: %d %v", id, status, body)
		}
	}
	e.token = e.vaultToken(t, "mp", "o-alice", "openid wechat_data")
	return e
}

func (e *vaultEnv) vaultToken(t *testing.T, client, openid, scope string) string {
	t.Helper()
	status, _, body := e.login(t, client, e.wx.Login("wxapp1", openid, ""), "scope", scope)
	if status != http.StatusOK {
		t.Fatalf("login: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// post sends fields as a form (or JSON) with the bearer token.
func (e *vaultEnv) post(t *testing.T, path, token string, asJSON bool, kv ...string) (int, map[string]any) {
	t.Helper()
	var body, ct string
	if asJSON {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		b, _ := json.Marshal(m)
		body, ct = string(b), "application/json"
	} else {
		f := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		body, ct = f.Encode(), "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequest(http.MethodPost, e.issuer+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return decodeDo(t, req)
}

// encrypt does what WeChat does to the data it hands a mini-program:
// AES-128-CBC under the session_key, PKCS#7, base64 — independently of
// wxidp's code.
func encrypt(t *testing.T, sessionKey string, doc any) (data, iv string) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(sessionKey)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	n := aes.BlockSize - len(plain)%aes.BlockSize
	plain = append(plain, bytes.Repeat([]byte{byte(n)}, n)...)
	ivb := make([]byte, aes.BlockSize)
	_, _ = rand.Read(ivb)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, ivb).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out), base64.StdEncoding.EncodeToString(ivb)
}

// weRun is wx.getWeRunData's data, as JSON decodes it (numbers float64).
func weRun(appID string) map[string]any {
	return map[string]any{
		"stepInfoList": []any{map[string]any{"timestamp": 1764547200.0, "step": 9173528.0}},
		"watermark":    map[string]any{"appid": appID, "timestamp": 1764590000.0},
	}
}

func signRaw(rawData, sessionKey string) string {
	sum := sha1.Sum([]byte(rawData + sessionKey))
	return hex.EncodeToString(sum[:])
}

// TestVaultDecrypt: encryptedData made with the session_key WeChat issued
// decrypts, as a form or as JSON, to exactly what was encrypted; malformed
// input, a foreign watermark and data that is not WeChat's are 400s, and
// tokens that may not use the vault get 401 or 403.
func TestVaultDecrypt(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	key := e.wx.SessionKey("wxapp1", "o-alice")
	data, iv := encrypt(t, key, weRun("wxapp1"))
	for _, asJSON := range []bool{false, true} {
		status, body := e.post(t, "/wechat/decrypt", e.token, asJSON, "encryptedData", data, "iv", iv)
		if status != http.StatusOK || !reflect.DeepEqual(body, weRun("wxapp1")) {
			t.Fatalf("decrypt (JSON %v): %d %v", asJSON, status, body)
		}
	}

	foreignData, foreignIV := encrypt(t, key, weRun("wxother"))
	garbage := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 48))
	cases := map[string][]string{
		"foreign watermark":     {"encryptedData", foreignData, "iv", foreignIV},
		"missing data":          {"iv", iv},
		"missing iv":            {"encryptedData", data},
		"data not base64":       {"encryptedData", "%%%", "iv", iv},
		"iv not base64":         {"encryptedData", data, "iv", "***"},
		"short iv":              {"encryptedData", data, "iv", base64.StdEncoding.EncodeToString([]byte("short"))},
		"data not whole blocks": {"encryptedData", base64.StdEncoding.EncodeToString([]byte("seventeen bytes!!")), "iv", iv},
		"not WeChat's data":     {"encryptedData", garbage, "iv", iv},
		"oversized":             {"encryptedData", strings.Repeat("A", 60000), "iv", iv},
	}
	for name, kv := range cases {
		if status, body := e.post(t, "/wechat/decrypt", e.token, false, kv...); status != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Errorf("%s: %d %v, want 400 invalid_request", name, status, body)
		} else if strings.Contains(stringify(body), "9173528") {
			t.Errorf("%s: the answer holds decrypted data", name)
		}
	}

	plain := e.vaultToken(t, "mp-plain", "o-bob", "openid")
	for name, tc := range map[string]struct {
		token  string
		status int
	}{
		"no token":           {"", http.StatusUnauthorized},
		"forged token":       {"eyJhbGciOiJSUzI1NiJ9.e30.c2ln", http.StatusUnauthorized},
		"without the scope":  {plain, http.StatusForbidden},
		"client_credentials": {e.clientToken(t), http.StatusForbidden},
	} {
		if status, body := e.post(t, "/wechat/decrypt", tc.token, false, "encryptedData", data, "iv", iv); status != tc.status {
			t.Errorf("%s: %d %v, want %d", name, status, body, tc.status)
		}
	}
	if logs := e.logs.String(); strings.Contains(logs, "9173528") || strings.Contains(logs, key) {
		t.Error("the logs hold decrypted data or the session_key")
	}
}

// clientToken is a client_credentials token: valid, but no user's.
func (e *vaultEnv) clientToken(t *testing.T) string {
	t.Helper()
	secret := e.registerClient(t, map[string]any{"client_id": "svc", "scope": "read"})
	status, _, body := e.postToken(t, "svc", secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})
	if status != http.StatusOK {
		t.Fatalf("client token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// TestVaultSessionKeyLifecycle: a later wx.login gives WeChat a new
// session_key; data encrypted under it is 409 session_key_expired (WeChat's
// checksession says the stored key is stale) until the mini-program posts
// that login's code to /wechat/session. The code cannot be replayed, and a
// code of another WeChat user is refused without changing the stored key.
func TestVaultSessionKeyLifecycle(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	oldKey := e.wx.SessionKey("wxapp1", "o-alice")
	raw := `{"nickName":"Alice"}`
	if status, body := e.post(t, "/wechat/verify-signature", e.token, false, "rawData", raw, "signature", signRaw(raw, oldKey)); status != http.StatusOK || body["valid"] != true {
		t.Fatalf("verify-signature: %d %v", status, body)
	}
	if status, body := e.post(t, "/wechat/verify-signature", e.token, true, "rawData", raw, "signature", signRaw(raw+" ", oldKey)); status != http.StatusOK || body["valid"] != false {
		t.Errorf("a wrong signature: %d %v, want valid false", status, body)
	}
	if status, _ := e.post(t, "/wechat/verify-signature", e.token, false, "rawData", raw, "signature", "xyz"); status != http.StatusBadRequest {
		t.Errorf("a malformed signature: %d, want 400", status)
	}

	code := e.wx.Login("wxapp1", "o-alice", "") // wx.login in the mini-program: WeChat has a new key
	newKey := e.wx.SessionKey("wxapp1", "o-alice")
	data, iv := encrypt(t, newKey, weRun("wxapp1"))
	if status, body := e.post(t, "/wechat/decrypt", e.token, false, "encryptedData", data, "iv", iv); status != http.StatusConflict || body["error"] != "session_key_expired" {
		t.Fatalf("data under the new key, before renewal: %d %v, want 409 session_key_expired", status, body)
	}
	if status, body := e.post(t, "/wechat/verify-signature", e.token, false, "rawData", raw, "signature", signRaw(raw, newKey)); status != http.StatusConflict {
		t.Errorf("a signature under the new key, before renewal: %d %v, want 409", status, body)
	}

	bobCode := e.wx.Login("wxapp1", "o-bob", "")
	if status, body := e.post(t, "/wechat/session", e.token, false, "code", bobCode); status != http.StatusConflict || body["error"] != "identity_mismatch" {
		t.Errorf("another user's code: %d %v, want 409 identity_mismatch", status, body)
	}
	if status, body := e.post(t, "/wechat/session", e.token, false, "code", code); status != http.StatusNoContent {
		t.Fatalf("renew: %d %v", status, body)
	}
	if status, body := e.post(t, "/wechat/decrypt", e.token, false, "encryptedData", data, "iv", iv); status != http.StatusOK || !reflect.DeepEqual(body, weRun("wxapp1")) {
		t.Errorf("data under the new key, after renewal: %d %v", status, body)
	}
	if status, body := e.post(t, "/wechat/session", e.token, true, "code", code); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("the same code again: %d %v, want 400 invalid_grant", status, body)
	}
	if status, _ := e.post(t, "/wechat/session", e.token, false, "code", "bad code!"); status != http.StatusBadRequest {
		t.Errorf("a malformed code: %d, want 400", status)
	}
}

// TestVaultWeChatDownAndRaces: with WeChat unreachable, what needs no
// WeChat still works and what does (checksession, renewal) is a 503 with
// Retry-After, never a verdict on the data; concurrent renewals with one
// code succeed once.
func TestVaultWeChatDownAndRaces(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	code := e.wx.Login("wxapp1", "o-alice", "")
	var wg sync.WaitGroup
	statuses := make(chan int, 8)
	for range 8 {
		wg.Go(func() {
			status, _ := e.post(t, "/wechat/session", e.token, false, "code", code)
			statuses <- status
		})
	}
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for s := range statuses {
		got[s]++
	}
	if got[http.StatusNoContent] != 1 || got[http.StatusBadRequest] != 7 {
		t.Errorf("8 concurrent renewals with one code: %v, want one 204 and seven 400", got)
	}

	key := e.wx.SessionKey("wxapp1", "o-alice")
	data, iv := encrypt(t, key, weRun("wxapp1"))
	e.wx.Close()
	if status, body := e.post(t, "/wechat/decrypt", e.token, false, "encryptedData", data, "iv", iv); status != http.StatusOK || !reflect.DeepEqual(body, weRun("wxapp1")) {
		t.Errorf("decrypt with WeChat down: %d %v", status, body)
	}
	garbage := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 48))
	for name, kv := range map[string][]string{
		"/wechat/decrypt":          {"encryptedData", garbage, "iv", iv},
		"/wechat/verify-signature": {"rawData", "{}", "signature", strings.Repeat("0", 40)},
		"/wechat/session":          {"code", "a-fresh-code"},
	} {
		resp := e.postRaw(t, name, e.token, kv...)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s with WeChat down: %d (Retry-After %q), want 503 with Retry-After", name, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
}

// postRaw posts a form with the bearer token and returns the response
// (body closed), for its status and headers.
func (e *vaultEnv) postRaw(t *testing.T, path, token string, kv ...string) *http.Response {
	t.Helper()
	f := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	req, _ := http.NewRequest(http.MethodPost, e.issuer+path, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestVaultRateLimitedPerUser: vault calls count against the per-user
// bearer budget (WXIDP_RATE_LIMIT_SUBJECT): one user past it gets 429 with
// Retry-After, another user is unaffected.
func TestVaultRateLimitedPerUser(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t, func(c *serveConfig) {
		c.limitsConfig = defaultLimits()
		c.RateSubject, c.RateSubjectBurst = 0.001, 3
	})
	bob := e.vaultToken(t, "mp", "o-bob", "openid wechat_data")
	raw := `{"nickName":"Alice"}`
	sig := signRaw(raw, e.wx.SessionKey("wxapp1", "o-alice"))
	for i := range 3 {
		if status, body := e.post(t, "/wechat/verify-signature", e.token, false, "rawData", raw, "signature", sig); status != http.StatusOK {
			t.Fatalf("call %d within the budget: %d %v", i+1, status, body)
		}
	}
	resp := e.postRaw(t, "/wechat/verify-signature", e.token, "rawData", raw, "signature", sig)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("past the budget: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if status, body := e.post(t, "/wechat/verify-signature", bob, false, "rawData", raw, "signature", sig); status != http.StatusOK {
		t.Errorf("another user: %d %v, want 200", status, body)
	}
}

// TestVaultAppTokenReplaced: the mini-program's WeChat access token that
// wxidp cached expired or was replaced elsewhere; checksession's 42001 is
// retried once with a fresh token, not answered as a server error.
func TestVaultAppTokenReplaced(t *testing.T) {
	t.Parallel()
	e := newVaultEnv(t)
	raw := `{"nickName":"Alice"}`
	bad := strings.Repeat("0", 40)
	if status, body := e.post(t, "/wechat/verify-signature", e.token, false, "rawData", raw, "signature", bad); status != http.StatusOK || body["valid"] != false {
		t.Fatalf("first check: %d %v", status, body)
	}
	e.wx.ExpireToken("wxapp1")
	if status, body := e.post(t, "/wechat/verify-signature", e.token, false, "rawData", raw, "signature", bad); status != http.StatusOK || body["valid"] != false {
		t.Errorf("after the app's access token expired: %d %v, want 200 valid false", status, body)
	}
}
