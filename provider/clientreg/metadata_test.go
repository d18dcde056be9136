package clientreg

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/provider/grants"
	"github.com/wxidp/wxidp/storage/memory"
)

func newTestRegistry(t *testing.T) (*Registry, *memory.Store) {
	t.Helper()
	hasher, err := NewSecretHasher([]string{strings.Repeat("h", 32)})
	if err != nil {
		t.Fatal(err)
	}
	cipher, err := keys.NewCipher([]string{strings.Repeat("k", 32)})
	if err != nil {
		t.Fatal(err)
	}
	store := memory.New()
	return NewRegistry(store, hasher, cipher), store
}

// checkRefused fails unless err is a rejection wrapping want whose message
// names field, and the store still holds n clients.
func checkRefused(t *testing.T, cs *Registry, what string, err, want error, field string, n int) {
	t.Helper()
	if !errors.Is(err, want) || !strings.Contains(err.Error(), field) {
		t.Errorf("%s: %v, want %v naming %s", what, err, want, field)
	}
	if list, err := cs.List(context.Background()); err != nil || len(list) != n {
		t.Errorf("%s: the store holds %d clients (%v), want %d", what, len(list), err, n)
	}
}

// The authorization_code grant (scan-to-login websites) is open to
// confidential and public clients, with or without refresh_token, but only
// with a redirect URI to send the code to; a public one is no mini-program
// and needs no appid.
func TestAuthorizationCodeGrant(t *testing.T) {
	t.Parallel()
	if !slices.Contains(grants.Supported(), grants.AuthorizationCode) {
		t.Fatal("grants.Supported() lacks authorization_code")
	}
	ctx := context.Background()
	cs, _ := newTestRegistry(t)
	cb := []string{"https://web.example.com/cb"}
	for _, md := range []Metadata{
		{ClientID: "conf", GrantTypes: []string{grants.AuthorizationCode}, RedirectURIs: cb},
		{ClientID: "conf-rt", GrantTypes: []string{grants.AuthorizationCode, grants.RefreshToken}, RedirectURIs: cb},
		{ClientID: "spa", TokenEndpointAuthMethod: "none", GrantTypes: []string{grants.AuthorizationCode, grants.RefreshToken}, RedirectURIs: cb},
	} {
		c, secret, err := cs.Create(ctx, md)
		if err != nil {
			t.Errorf("register %s: %v", md.ClientID, err)
			continue
		}
		if !slices.Equal(c.GrantTypes, md.GrantTypes) || !slices.Equal(c.RedirectURIs, cb) {
			t.Errorf("%s stored with grants %q, redirect URIs %q", md.ClientID, c.GrantTypes, c.RedirectURIs)
		}
		if public := md.TokenEndpointAuthMethod == "none"; public != (secret == "") || public != (len(c.SecretHash) == 0) {
			t.Errorf("%s: secret %q, hash %d bytes; want one exactly when confidential", md.ClientID, secret, len(c.SecretHash))
		}
	}

	for name, md := range map[string]Metadata{
		"confidential": {ClientID: "no-cb", GrantTypes: []string{grants.AuthorizationCode}},
		"public":       {ClientID: "no-cb", TokenEndpointAuthMethod: "none", GrantTypes: []string{grants.AuthorizationCode}},
	} {
		_, _, err := cs.Create(ctx, md)
		checkRefused(t, cs, "authorization_code without a redirect URI ("+name+")", err, ErrInvalidMetadata, "redirect_uris", 3)
	}
	_, err := cs.Update(ctx, "conf", Metadata{GrantTypes: []string{grants.AuthorizationCode}}, time.Time{})
	checkRefused(t, cs, "update dropping the redirect URIs", err, ErrInvalidMetadata, "redirect_uris", 3)
	if c, err := cs.Get(ctx, "conf"); err != nil || !slices.Equal(c.RedirectURIs, cb) {
		t.Errorf("the refused update changed the client: %+v, %v", c, err)
	}

	// The WeChat-code grant still binds a public client to an appid.
	_, _, err = cs.Create(ctx, Metadata{ClientID: "mp", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{grants.AuthorizationCode, grants.WeChatCode}, RedirectURIs: cb})
	checkRefused(t, cs, "WeChat-code grant without an appid", err, ErrInvalidMetadata, "wechat_appid", 3)
	_, _, err = cs.Create(ctx, Metadata{ClientID: "mp", TokenEndpointAuthMethod: "none"})
	checkRefused(t, cs, "default public grants without an appid", err, ErrInvalidMetadata, "wechat_appid", 3)
}

// post_logout_redirect_uris follow the rules of redirect_uris, and errors
// name the field.
func TestPostLogoutRedirectURIs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs, _ := newTestRegistry(t)
	good := []string{"https://web.example.com/bye", "http://127.0.0.1:8080/", "com.example.app:/logged-out"}
	c, _, err := cs.Create(ctx, Metadata{ClientID: "web", PostLogoutRedirectURIs: append(slices.Clone(good), good[0])})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.PostLogoutRedirectURIs, good) {
		t.Fatalf("stored %q, want %q (deduplicated, in order)", c.PostLogoutRedirectURIs, good)
	}
	for _, uri := range []string{
		"", "https://web.example.com/bye#frag", "http://web.example.com/bye", "http://localhost@evil.com/",
		"https://WEB.example.com/", "javascript:alert(1)", "https://web.example.com/ bye",
	} {
		_, _, err := cs.Create(ctx, Metadata{ClientID: "evil", PostLogoutRedirectURIs: []string{good[0], uri}})
		checkRefused(t, cs, "create with "+uri, err, ErrInvalidRedirectURI, "post_logout_redirect_uris", 1)
		_, err = cs.Update(ctx, "web", Metadata{PostLogoutRedirectURIs: []string{uri}}, time.Time{})
		checkRefused(t, cs, "update with "+uri, err, ErrInvalidRedirectURI, "post_logout_redirect_uris", 1)
	}
	if got, err := cs.Get(ctx, "web"); err != nil || !slices.Equal(got.PostLogoutRedirectURIs, good) {
		t.Fatalf("refused updates changed the client: %+v, %v", got, err)
	}
	got, err := cs.Update(ctx, "web", Metadata{}, time.Time{})
	if err != nil || len(got.PostLogoutRedirectURIs) != 0 {
		t.Fatalf("update without post_logout_redirect_uris: %q, %v; want none (PUT replaces)", got.PostLogoutRedirectURIs, err)
	}
}

// wechat_login_page is a page path of the client's mini-program, on a
// mini-program client or a scan-to-login website bound to one.
func TestWeChatLoginPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cs, _ := newTestRegistry(t)
	mp := func(id, page string) Metadata {
		return Metadata{ClientID: id, TokenEndpointAuthMethod: "none", WeChatAppID: "wxmini",
			WeChatAppSecret: "app-secret", WeChatLoginPage: page}
	}
	for i, page := range []string{"pages/scan/index", "index", "sub_pkg/login-page/Main2", strings.Repeat("a/", 63) + "ab"} {
		c, _, err := cs.Create(ctx, mp("mp"+string(rune('0'+i)), page))
		if err != nil || c.WeChatLoginPage != page {
			t.Errorf("page %q: %+v, %v", page, c, err)
		}
	}
	n := 4
	for _, page := range []string{
		"/pages/scan/index", "pages/scan/", "pages//index", "pages/scan/index?x=1", "pages/scan/index.html",
		"pages/../index", "pages/scan index", "页面/index", "pages\\scan", strings.Repeat("a", 129),
	} {
		_, _, err := cs.Create(ctx, mp("bad", page))
		checkRefused(t, cs, "page "+page, err, ErrInvalidMetadata, "wechat_login_page", n)
		_, err = cs.Update(ctx, "mp0", mp("mp0", page), time.Time{})
		checkRefused(t, cs, "update to page "+page, err, ErrInvalidMetadata, "wechat_login_page", n)
	}
	// A scan-to-login website names the mini-program its login page shows
	// the code of, with the app secret that code is made with.
	web := Metadata{ClientID: "web", GrantTypes: []string{grants.AuthorizationCode},
		RedirectURIs: []string{"https://web.example.com/cb"}, WeChatLoginPage: "pages/scan/index"}
	_, _, err := cs.Create(ctx, web)
	checkRefused(t, cs, "page without wechat_appid", err, ErrInvalidMetadata, "wechat_appid", n)
	web.WeChatAppID = "wxmini"
	_, _, err = cs.Create(ctx, web)
	checkRefused(t, cs, "wechat_appid without its app secret", err, ErrInvalidMetadata, "wechat_app_secret", n)
	web.WeChatAppSecret = "app-secret"
	c, secret, err := cs.Create(ctx, web)
	if err != nil || c.WeChatLoginPage != web.WeChatLoginPage || c.WeChatAppID != "wxmini" || len(c.WeChatAppSecret) == 0 || secret == "" {
		t.Fatalf("confidential scan-to-login website with its mini-program: %+v, %v", c, err)
	}
	n++
	// Other confidential clients still have no WeChat binding.
	_, _, err = cs.Create(ctx, Metadata{ClientID: "svc", WeChatAppID: "wxmini", WeChatAppSecret: "app-secret"})
	checkRefused(t, cs, "client_credentials client with wechat_appid", err, ErrInvalidMetadata, "wechat_appid", n)

	c, err = cs.Update(ctx, "mp0", mp("mp0", ""), time.Time{})
	if err != nil || c.WeChatLoginPage != "" {
		t.Errorf("clearing the page: %+v, %v", c, err)
	}
}
