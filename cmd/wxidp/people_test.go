package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// peopleEnv is a mini-program "mp" (app wxpeople) whose users may have a
// profile and phone, a resource server "rs" that introspects, and a
// settable clock.
type peopleEnv struct {
	*wechatEnv
	clock    *testClock
	rsSecret string
}

func newPeopleEnv(t *testing.T) *peopleEnv {
	t.Helper()
	return newPeopleEnvWith(t, &testClock{}, nil)
}

// newPeopleEnvWith is newPeopleEnv with the server's clock and a change to
// its configuration (nil: none).
func newPeopleEnvWith(t *testing.T, clock *testClock, mutate func(*serveConfig)) *peopleEnv {
	t.Helper()
	e := &peopleEnv{wechatEnv: newWeChatEnv(t, func(c *serveConfig) {
		c.now = clock.now
		if mutate != nil {
			mutate(c)
		}
	}), clock: clock}
	e.miniProgram(t, "mp", "wxpeople")
	e.rsSecret = e.registerClient(t, map[string]any{"client_id": "rs", "scope": "introspect"})
	return e
}

// signIn logs openid (with unionid) in and returns the token response.
func (e *peopleEnv) signIn(t *testing.T, openid, unionid string, kv ...string) map[string]any {
	t.Helper()
	kv = append([]string{"scope", "openid offline_access profile phone"}, kv...)
	status, _, body := e.login(t, "mp", e.wx.Login("wxpeople", openid, unionid), kv...)
	if status != http.StatusOK {
		t.Fatalf("login %s: %d %v\n%s", openid, status, body, e.logs.String())
	}
	return body
}

// bearer sends a request with a bearer token and an optional JSON body.
func (e *peopleEnv) bearer(t *testing.T, method, path, token, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.issuer+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

func (e *peopleEnv) active(t *testing.T, token string) bool {
	t.Helper()
	status, _, body := e.postForm(t, "/oauth2/introspect", nil, url.Values{"token": {token}}, "rs", e.rsSecret)
	if status != http.StatusOK {
		t.Fatalf("introspect: %d %v", status, body)
	}
	return body["active"] == true
}

func (e *peopleEnv) refresh(t *testing.T, rt string) (int, map[string]any) {
	t.Helper()
	status, _, body := e.postToken(t, "", "", url.Values{"grant_type": {"refresh_token"}, "client_id": {"mp"}, "refresh_token": {rt}})
	return status, body
}

func subOf(t *testing.T, tokens map[string]any) string {
	t.Helper()
	sub, _ := unverifiedClaims(t, tokens["access_token"].(string))["sub"].(string)
	if sub == "" {
		t.Fatal("no sub in the access token")
	}
	return sub
}

// TestPeopleDisable: a disabled user's tokens fail everywhere on the next
// request, their WeChat login is refused with 403 access_denied, and
// enabling lets them log in again as the same subject.
func TestPeopleDisable(t *testing.T) {
	t.Parallel()
	e := newPeopleEnv(t)
	alice := e.signIn(t, "o-alice", "")
	bob := e.signIn(t, "o-bob", "")
	sub := subOf(t, alice)

	status, body := e.adminJSON(t, "POST", "/admin/users/"+sub+"/disable", testAdminToken, nil)
	if status != http.StatusOK || body["disabled"] != true || body["disabled_at"] == nil {
		t.Fatalf("disable: %d %v", status, body)
	}
	if e.active(t, alice["access_token"].(string)) {
		t.Error("introspection: the disabled user's access token is active")
	}
	if status, body := e.refresh(t, alice["refresh_token"].(string)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("refresh: %d %v, want 400 invalid_grant", status, body)
	}
	if status, h, _ := e.bearer(t, "GET", "/userinfo", alice["access_token"].(string), ""); status != http.StatusUnauthorized ||
		!strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("userinfo: %d %q, want 401 invalid_token", status, h.Get("WWW-Authenticate"))
	}
	if status, _, body := e.login(t, "mp", e.wx.Login("wxpeople", "o-alice", ""), "scope", "openid"); status != http.StatusForbidden || body["error"] != "access_denied" {
		t.Errorf("login of a disabled user: %d %v, want 403 access_denied", status, body)
	}
	// Bob is untouched.
	if !e.active(t, bob["access_token"].(string)) {
		t.Error("another user's token went inactive")
	}
	status, body = e.adminJSON(t, "GET", "/admin/users/"+sub, testAdminToken, nil)
	if status != http.StatusOK || body["disabled"] != true || len(body["refresh_token_chains"].([]any)) != 0 {
		t.Errorf("details of the disabled user: %d %v", status, body)
	}
	// Disabling twice keeps the first time.
	_, again := e.adminJSON(t, "POST", "/admin/users/"+sub+"/disable", testAdminToken, nil)
	if again["disabled_at"] != body["disabled_at"] {
		t.Errorf("disabled_at moved: %v then %v", body["disabled_at"], again["disabled_at"])
	}

	status, body = e.adminJSON(t, "POST", "/admin/users/"+sub+"/enable", testAdminToken, nil)
	if status != http.StatusOK || body["disabled"] != false {
		t.Fatalf("enable: %d %v", status, body)
	}
	if got := subOf(t, e.signIn(t, "o-alice", "")); got != sub {
		t.Errorf("after enabling, the login is %s, want %s", got, sub)
	}
	for _, typ := range []string{"user.disabled", "user.enabled"} {
		_, ev := e.adminJSON(t, "GET", "/admin/audit?type="+typ+"&target="+sub, testAdminToken, nil)
		if n := len(ev["events"].([]any)); n == 0 {
			t.Errorf("no %s audit event for %s", typ, sub)
		}
	}
	if status, _ := e.adminJSON(t, "POST", "/admin/users/no-such-user/disable", testAdminToken, nil); status != http.StatusNotFound {
		t.Errorf("disable an unknown user: %d", status)
	}
}

// TestPeopleProfile: PATCH /account sets the profile; userinfo, a fresh ID
// token and a refreshed one carry nickname, picture and updated_at; bad
// input is a 400 that changes nothing.
func TestPeopleProfile(t *testing.T) {
	t.Parallel()
	e := newPeopleEnv(t)
	tokens := e.signIn(t, "o-carol", "")
	at := tokens["access_token"].(string)
	const pic = "https://thirdwx.qlogo.cn/mmopen/vi_32/carol/132"
	status, _, body := e.bearer(t, "PATCH", "/account", at, `{"nickname":"小红 🌸","picture":"`+pic+`"}`)
	if status != http.StatusOK || body["nickname"] != "小红 🌸" || body["picture"] != pic || body["updated_at"] == nil {
		t.Fatalf("PATCH /account: %d %v", status, body)
	}
	updated := body["updated_at"]

	for _, bad := range []struct{ name, body string }{
		{"http picture", `{"picture":"http://example.com/a.png"}`},
		{"picture with credentials", `{"picture":"https://u:p@example.com/a.png"}`},
		{"relative picture", `{"picture":"/a.png"}`},
		{"nickname too long", `{"nickname":"` + strings.Repeat("长", 65) + `"}`},
		{"nickname with a control character", `{"nickname":"a\u0007b"}`},
		{"nickname with a bidi override", `{"nickname":"abc\u202edef"}`},
		{"nickname with surrounding space", `{"nickname":" bob"}`},
		{"unknown field", `{"nick":"x"}`},
		{"nothing to change", `{}`},
		{"not an object", `["x"]`},
		{"malformed", `{"nickname":`},
		{"oversized", `{"nickname":"` + strings.Repeat("x", 1<<20) + `"}`},
	} {
		if status, _, body := e.bearer(t, "PATCH", "/account", at, bad.body); status < 400 || status >= 500 {
			t.Errorf("%s: %d %v, want a 4xx", bad.name, status, body)
		}
	}
	if status, _, _ := e.bearer(t, "PATCH", "/account", "", `{"nickname":"x"}`); status != http.StatusUnauthorized {
		t.Errorf("no token: %d", status)
	}
	noProfile := e.signIn(t, "o-dave", "", "scope", "openid")
	if status, h, body := e.bearer(t, "PATCH", "/account", noProfile["access_token"].(string), `{"nickname":"x"}`); status != http.StatusForbidden ||
		!strings.Contains(h.Get("WWW-Authenticate"), `scope="profile"`) {
		t.Errorf("token without scope profile: %d %v", status, body)
	}

	// Nothing changed by the refusals.
	status, _, info := e.bearer(t, "GET", "/userinfo", at, "")
	if status != http.StatusOK || info["nickname"] != "小红 🌸" || info["picture"] != pic || info["updated_at"] != updated {
		t.Fatalf("userinfo: %d %v", status, info)
	}

	ctx := context.Background()
	op, err := oidc.NewProvider(ctx, e.issuer)
	if err != nil {
		t.Fatal(err)
	}
	verify := op.Verifier(&oidc.Config{ClientID: "mp"})
	idClaims := func(raw string) map[string]any {
		t.Helper()
		idt, err := verify.Verify(ctx, raw)
		if err != nil {
			t.Fatalf("ID token: %v", err)
		}
		var c map[string]any
		if err := idt.Claims(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	fresh := e.signIn(t, "o-carol", "")
	if c := idClaims(fresh["id_token"].(string)); c["nickname"] != "小红 🌸" || c["picture"] != pic || c["updated_at"] != updated {
		t.Errorf("fresh ID token claims: %v", c)
	}
	// A refresh after a change carries the new profile; clearing removes it.
	if status, _, body := e.bearer(t, "PATCH", "/account", fresh["access_token"].(string), `{"nickname":"","picture":"https://example.com/p.png"}`); status != http.StatusOK {
		t.Fatalf("second PATCH: %d %v", status, body)
	}
	status, refreshed := e.refresh(t, fresh["refresh_token"].(string))
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, refreshed)
	}
	if c := idClaims(refreshed["id_token"].(string)); c["nickname"] != nil || c["picture"] != "https://example.com/p.png" {
		t.Errorf("refreshed ID token claims: %v", c)
	}
}

// TestAdminUsers: the list filters and pages; bad queries are 400s naming
// the parameter; details never show a session key.
func TestAdminUsers(t *testing.T) {
	t.Parallel()
	e := newPeopleEnv(t)
	subs := map[string]string{}
	for i, openid := range []string{"o-1", "o-2", "o-3", "o-4", "o-5"} {
		var kv []string
		if i == 2 {
			kv = []string{"phone_code", e.wx.PhoneCode("wxpeople", "13600000003")}
		}
		subs[openid] = subOf(t, e.signIn(t, openid, "u-"+openid, kv...))
	}
	list := func(q string) (int, []string, string) {
		t.Helper()
		status, body := e.adminJSON(t, "GET", "/admin/users?"+q, testAdminToken, nil)
		var got []string
		if users, ok := body["users"].([]any); ok {
			for _, u := range users {
				got = append(got, u.(map[string]any)["sub"].(string))
			}
		}
		next, _ := body["next_cursor"].(string)
		return status, got, next
	}
	for q, want := range map[string]string{
		"openid=o-2":                        subs["o-2"],
		"openid=o-2&appid=wxpeople":         subs["o-2"],
		"unionid=u-o-4":                     subs["o-4"],
		"phone=13600000003":                 subs["o-3"],
		"client_id=mp&openid=o-5":           subs["o-5"],
		"openid=o-1&appid=wxpeople&limit=1": subs["o-1"],
	} {
		if status, got, _ := list(q); status != http.StatusOK || len(got) != 1 || got[0] != want {
			t.Errorf("%s: %d %v, want [%s]", q, status, got, want)
		}
	}
	if _, got, _ := list("openid=o-2&appid=wxother"); len(got) != 0 {
		t.Errorf("openid in another app: %v", got)
	}
	if _, got, _ := list("client_id=rs"); len(got) != 0 {
		t.Errorf("users of a client nobody used: %v", got)
	}
	// Paging: every user once, newest first.
	var all []string
	cursor := ""
	for range 10 {
		q := "limit=2&client_id=mp"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		status, got, next := list(q)
		if status != http.StatusOK {
			t.Fatalf("page: %d", status)
		}
		all = append(all, got...)
		if cursor = next; cursor == "" {
			break
		}
	}
	want := []string{subs["o-5"], subs["o-4"], subs["o-3"], subs["o-2"], subs["o-1"]}
	if strings.Join(all, ",") != strings.Join(want, ",") {
		t.Errorf("paged: %v, want %v", all, want)
	}
	future := url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339))
	if _, got, _ := list("created_after=" + future); len(got) != 0 {
		t.Errorf("created_after the future: %v", got)
	}
	if _, got, _ := list("created_before=" + future); len(got) != 5 {
		t.Errorf("created_before the future: %v", got)
	}
	for _, q := range []string{"limit=0", "limit=x", "cursor=bogus", "created_after=yesterday", "appid=wxpeople",
		"openid=" + strings.Repeat("x", 200), "color=red", "openid=a&openid=b"} {
		if status, _, _ := list(q); status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, status)
		}
	}
	if status, _ := e.adminJSON(t, "GET", "/admin/users", "wrong-token-wrong-token", nil); status != http.StatusUnauthorized {
		t.Errorf("wrong admin token: %d", status)
	}

	status, d := e.adminJSON(t, "GET", "/admin/users/"+subs["o-3"], testAdminToken, nil)
	if status != http.StatusOK || d["phone_number"] != "13600000003" || d["last_login_at"] == nil {
		t.Fatalf("details: %d %v", status, d)
	}
	ids := d["identities"].([]any)
	if len(ids) != 1 || ids[0].(map[string]any)["openid"] != "o-3" || ids[0].(map[string]any)["unionid"] != "u-o-3" {
		t.Errorf("identities: %v", ids)
	}
	chains := d["refresh_token_chains"].([]any)
	if len(chains) != 1 || chains[0].(map[string]any)["client_id"] != "mp" {
		t.Errorf("chains: %v", chains)
	}
	if strings.Contains(stringify(d), e.wx.SessionKey("wxpeople", "o-3")) || strings.Contains(stringify(d), "session_key") {
		t.Error("the details show a session key")
	}
	if status, _ := e.adminJSON(t, "GET", "/admin/users/nobody", testAdminToken, nil); status != http.StatusNotFound {
		t.Errorf("unknown user: %d", status)
	}
}

// TestPeopleConcurrent: concurrent deletions of one account erase it once
// (one 204, the rest 401); refreshes racing a disable leave no usable token.
func TestPeopleConcurrent(t *testing.T) {
	t.Parallel()
	e := newPeopleEnv(t)
	at := e.signIn(t, "o-gina", "")["access_token"].(string)
	const n = 6
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, _ := e.bearer(t, "DELETE", "/account", at, "")
			statuses <- status
		}()
	}
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for s := range statuses {
		got[s]++
	}
	if got[http.StatusNoContent] != 1 || got[http.StatusUnauthorized] != n-1 {
		t.Errorf("concurrent deletions answered %v, want one 204 and %d 401", got, n-1)
	}
	_, ev := e.adminJSON(t, "GET", "/admin/audit?type=user.deleted", testAdminToken, nil)
	if len(ev["events"].([]any)) != 1 {
		t.Errorf("user.deleted events: %v", ev["events"])
	}

	// Refreshes racing a disable: afterwards nothing the refreshes handed
	// out is active.
	tokens := e.signIn(t, "o-hugo", "")
	sub := subOf(t, tokens)
	rts := []string{tokens["refresh_token"].(string)}
	for range 3 {
		other := e.signIn(t, "o-hugo", "")
		rts = append(rts, other["refresh_token"].(string))
	}
	issued := make(chan map[string]any, len(rts))
	for _, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, body := e.refresh(t, rt); status == http.StatusOK {
				issued <- body
			}
		}()
	}
	if status, body := e.adminJSON(t, "POST", "/admin/users/"+sub+"/disable", testAdminToken, nil); status != http.StatusOK {
		t.Fatalf("disable: %d %v", status, body)
	}
	wg.Wait()
	close(issued)
	for body := range issued {
		if e.active(t, body["access_token"].(string)) || e.active(t, body["refresh_token"].(string)) {
			t.Error("a token a refresh handed out around the disable is active")
		}
	}
	for _, rt := range rts {
		if e.active(t, rt) {
			t.Error("a refresh token of the disabled user is active")
		}
	}
}
