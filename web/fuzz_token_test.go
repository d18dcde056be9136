package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/provider/clientreg"
	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/provider/wechat"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
	"github.com/wxidp/wxidp/storage/memory"
	"github.com/wxidp/wxidp/web"
)

// Names the fuzz seeds refer to: with them the fuzzer starts from requests
// that reach client authentication and the grant handlers, not only the
// form parser.
const (
	tokenFuzzAppID    = "wxfuzz0000000001"
	tokenFuzzPublic   = "fuzz-miniprogram"
	tokenFuzzConfid   = "fuzz-service"
	tokenFuzzSecret   = "0123456789abcdef0123456789abcdef-fuzz"
	tokenFuzzFormType = "application/x-www-form-urlencoded"
)

// newTokenFuzzServer wires the public handler as `wxidp serve --dev` does
// (memory store, real keys, real provider, fake WeChat) with one public
// mini-program client and one confidential client. Both client secrets are
// generated, so no input the fuzzer can produce authenticates.
func newTokenFuzzServer(t testing.TB) *echo.Echo {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	secrets := []string{tokenFuzzSecret}
	cipher, err := keys.NewCipher(secrets)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := clientreg.NewSecretHasher(secrets)
	if err != nil {
		t.Fatal(err)
	}
	store := memory.New()
	km := keys.NewManager(store, cipher, keys.Options{
		JWKSMaxAge: 10 * time.Minute, ReloadEvery: time.Minute, TokenLifetime: time.Hour, Log: log,
	})
	if err := km.Init(ctx); err != nil {
		t.Fatal(err)
	}
	globalSecret, err := keys.DeriveKey(secrets[0], "wxidp/fosite-global-secret/v1")
	if err != nil {
		t.Fatal(err)
	}
	fake := wechattest.NewServer(t)
	fake.AddApp(tokenFuzzAppID, "fuzz-app-secret")
	wx, err := wechat.New(fake.URL, wechat.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	prov, err := provider.New(provider.Config{
		Issuer: "http://127.0.0.1:4444", AccessTokenTTL: 15 * time.Minute,
		RefreshTokenTTL: time.Hour, IDTokenTTL: time.Hour, GlobalSecret: globalSecret,
	}, provider.Deps{Store: store, Signer: km.Signer(), Hasher: hasher, WeChat: wx, Cipher: cipher, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	clients := clientreg.NewRegistry(store, hasher, cipher)
	for _, md := range []clientreg.Metadata{{
		ClientID: tokenFuzzConfid, GrantTypes: []string{"client_credentials"},
		Scope: "read write", Audience: []string{"https://api.example.com"},
	}, {
		ClientID: tokenFuzzPublic, TokenEndpointAuthMethod: "none",
		Scope:       "openid offline_access profile phone",
		WeChatAppID: tokenFuzzAppID, WeChatAppSecret: "fuzz-app-secret",
	}} {
		if _, _, err := clients.Create(ctx, md); err != nil {
			t.Fatal(err)
		}
	}
	e, err := web.NewPublic(web.PublicConfig{
		Issuer: "http://127.0.0.1:4444", GrantTypes: grants.Supported(), Log: log,
		Tokens: prov, UserInfo: prov, Lifecycle: prov, Keys: km, Store: store, Metrics: web.NewMetrics(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// FuzzTokenEndpoint posts arbitrary bodies, content types and Authorization
// headers to /oauth2/token. Whatever arrives, the answer is a client error
// in RFC 6749 §5.2 shape: never a 5xx (a panic caught by the recovery
// middleware is one), never a token.
func FuzzTokenEndpoint(f *testing.F) {
	grant := "grant_type=" + grants.WeChatCode
	for _, s := range []struct{ ctype, authz, body string }{
		{tokenFuzzFormType, "", grant + "&client_id=" + tokenFuzzPublic + "&code=0a1b2c3d4e&scope=openid+offline_access"},
		{tokenFuzzFormType, "", grant + "&client_id=" + tokenFuzzPublic + "&code=abc&phone_code=%00"},
		{tokenFuzzFormType, "", grant + "&client_id=" + tokenFuzzConfid + "&code=abc"},
		{tokenFuzzFormType, "Basic ZnV6ei1zZXJ2aWNlOndyb25n", "grant_type=client_credentials&scope=read"},
		{tokenFuzzFormType, "Basic !!!", "grant_type=client_credentials"},
		{tokenFuzzFormType, "", "grant_type=client_credentials&client_id=" + tokenFuzzConfid + "&client_secret=x"},
		{tokenFuzzFormType, "", "grant_type=refresh_token&client_id=" + tokenFuzzPublic + "&refresh_token=ory_rt_x.y"},
		{tokenFuzzFormType, "", "grant_type=authorization_code&code=x&redirect_uri=http://x"},
		{tokenFuzzFormType, "", "grant_type=password&username=a&password=b"},
		{tokenFuzzFormType, "", "grant_type=%zz&client_id=;;;"},
		{tokenFuzzFormType + "; charset=utf-16", "", "grant_type=client_credentials"},
		{"application/json", "", `{"grant_type":"client_credentials"}`},
		{"multipart/form-data; boundary=x", "", "--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--x--"},
		{"", "", ""},
		{tokenFuzzFormType, "Bearer x", strings.Repeat("a=b&", 20000)},
	} {
		f.Add(s.ctype, s.authz, []byte(s.body))
	}
	e := newTokenFuzzServer(f)
	f.Fuzz(func(t *testing.T, ctype, authz string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/oauth2/token", bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set(echo.HeaderContentType, ctype)
		}
		if authz != "" {
			req.Header.Set(echo.HeaderAuthorization, authz)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		checkTokenError(t, rec)
	})
}

// checkTokenError fails unless rec is an RFC 6749 §5.2 error answer of a
// 4xx status.
func checkTokenError(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code < 400 || rec.Code >= 500 {
		t.Fatalf("status %d, want a 4xx client error; body %q", rec.Code, rec.Body.Bytes())
	}
	if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		t.Fatalf("status %d with Content-Type %q, want JSON", rec.Code, ct)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("status %d with a body that is not a JSON object: %q", rec.Code, rec.Body.Bytes())
	}
	code, ok := body["error"].(string)
	if !ok || !validErrorCode(code) {
		t.Fatalf("status %d: error field %#v is not an RFC 6749 error code; body %q", rec.Code, body["error"], rec.Body.Bytes())
	}
	if d, ok := body["error_description"]; ok {
		if _, isString := d.(string); !isString {
			t.Fatalf("error_description %#v is not a string", d)
		}
	}
	for _, k := range []string{"access_token", "refresh_token", "id_token"} {
		if _, ok := body[k]; ok {
			t.Fatalf("error answer carries %s", k)
		}
	}
}

// validErrorCode applies RFC 6749 §5.2's grammar: one or more of
// %x20-21 / %x23-5B / %x5D-7E.
func validErrorCode(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
