package wechatfake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Paths of the WeChat endpoints the fake serves, for FailNext and Calls.
const (
	PathCode2Session = "/sns/jscode2session"
	PathStableToken  = "/cgi-bin/stable_token"
	PathPhoneNumber  = "/wxa/business/getuserphonenumber"
	PathWXACode      = "/wxa/getwxacodeunlimit"
	PathCheckSession = "/wxa/checksession"
)

const (
	codeTTL  = 5 * time.Minute    // login and phone codes, as documented
	tokenTTL = 7200 * time.Second // access tokens
)

// Fake is an in-memory WeChat API. The zero value is not usable; call New.
type Fake struct {
	mux *http.ServeMux

	mu            sync.Mutex
	now           func() time.Time
	delay         time.Duration
	countryString bool
	apps          map[string]*app
	codes         map[string]*loginCode // js_code -> pending login
	purgeAt       int                   // len(codes) at which Login next drops expired codes
	phoneCodes    map[string]*phoneCode
	tokens        map[string]*token // access_token -> token, current and superseded
	fail          map[string][]int  // path -> errcodes to answer next, in order
	calls         map[string]int
	wxaCodes      []WXACode // drawn codes, oldest first, at most maxWXACodes
}

type app struct {
	secret      string
	current     string            // access token stable_token hands out
	issued      int               // tokens issued so far
	sessionKeys map[string]string // openid -> session_key of the latest login
	pages       map[string]bool   // published pages, for wxacode's check_path
}

type loginCode struct {
	appID, openID, unionID, sessionKey string
	expires                            time.Time
	used                               bool
}

type phoneCode struct {
	appID, number, pure, country string
	issued, expires              time.Time
	used                         bool
}

type token struct {
	appID   string
	expires time.Time
	revoked bool // superseded by a forced refresh: 40001, not 42001
}

// New returns an empty fake: no apps, real clock, no delay.
func New() *Fake {
	f := &Fake{
		now:        time.Now,
		apps:       map[string]*app{},
		codes:      map[string]*loginCode{},
		phoneCodes: map[string]*phoneCode{},
		tokens:     map[string]*token{},
		fail:       map[string][]int{},
		calls:      map[string]int{},
	}
	f.mux = http.NewServeMux()
	f.mux.HandleFunc(PathCode2Session, f.api(http.MethodGet, f.code2Session))
	f.mux.HandleFunc(PathStableToken, f.api(http.MethodPost, f.stableToken))
	f.mux.HandleFunc(PathPhoneNumber, f.api(http.MethodPost, f.phoneNumber))
	f.mux.HandleFunc(PathWXACode, f.api(http.MethodPost, f.wxaCode))
	f.mux.HandleFunc(PathCheckSession, f.api(http.MethodGet, f.checkSession))
	f.mux.HandleFunc("POST /_fake/login", f.fakeLogin)
	f.mux.HandleFunc("POST /_fake/phonecode", f.fakePhoneCode)
	f.mux.HandleFunc("POST /_fake/sessionkey", f.fakeSessionKey)
	return f
}

// ServeHTTP serves the WeChat API and the /_fake/ helpers.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

// AddApp registers a mini-program, or changes its secret. A new app has
// the DefaultPages published (see SetPublishedPages).
func (f *Fake) AddApp(appID, secret string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.apps[appID]; ok {
		a.secret = secret
		return
	}
	f.apps[appID] = &app{secret: secret, sessionKeys: map[string]string{}, pages: pageSet(DefaultPages())}
}

// Login simulates wx.login in the mini-program appID for the user openID
// (unionID may be empty): it returns a fresh code, valid 5 minutes and once.
// Like the real wx.login it rotates the user's session_key. appID need not be
// registered, so tests can exchange a code at the wrong app.
func (f *Fake) Login(appID, openID, unionID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	// Keep a long dev session's memory bounded, visiting the codes only
	// when they have doubled: a purge on every call made each Login cost
	// O(codes), which under wxidp-bench's thousands of logins a second
	// grew into milliseconds under the lock. Expired codes kept a little
	// longer answer as they would once purged (code2session checks expiry).
	if len(f.codes) >= f.purgeAt {
		for c, lc := range f.codes {
			if !now.Before(lc.expires) {
				delete(f.codes, c)
			}
		}
		f.purgeAt = max(2*len(f.codes), 1024)
	}
	code := randomHex(16)
	key := base64.StdEncoding.EncodeToString(randomBytes(16))
	f.codes[code] = &loginCode{appID: appID, openID: openID, unionID: unionID, sessionKey: key, expires: now.Add(codeTTL)}
	if a, ok := f.apps[appID]; ok {
		a.sessionKeys[openID] = key
	}
	return code
}

// SessionKey returns the session_key of openID's latest Login, "" if none.
func (f *Fake) SessionKey(appID, openID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.apps[appID]; ok {
		return a.sessionKeys[openID]
	}
	return ""
}

// PhoneCode simulates the user tapping the getPhoneNumber button in appID: it
// returns a single-use phone code valid 5 minutes. phoneNumber is written as
// WeChat shows it: "13800138000" for mainland China (country code 86) or
// "+CC NUMBER" (e.g. "+1 2025550123") elsewhere.
func (f *Fake) PhoneCode(appID, phoneNumber string) string {
	pc := &phoneCode{appID: appID, number: phoneNumber, pure: phoneNumber, country: "86"}
	if rest, ok := strings.CutPrefix(phoneNumber, "+"); ok {
		cc, pure, _ := strings.Cut(rest, " ")
		pc.country, pc.pure = cc, strings.ReplaceAll(pure, " ", "")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pc.issued = f.now()
	for c, old := range f.phoneCodes {
		if !pc.issued.Before(old.expires) {
			delete(f.phoneCodes, c)
		}
	}
	pc.expires = pc.issued.Add(codeTTL)
	code := randomHex(32)
	f.phoneCodes[code] = pc
	return code
}

// SetNow replaces the clock (nil restores time.Now). Codes and tokens expire
// by it.
func (f *Fake) SetNow(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now == nil {
		now = time.Now
	}
	f.now = now
}

// SetDelay makes every WeChat endpoint wait d before answering. The request
// is processed after the wait even if its client gave up, as WeChat does.
func (f *Fake) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// FailNext queues errcode as the answer to the next request to path (one of
// the Path* constants); call it several times to queue several. An injected
// failure is answered before any processing, so it consumes no code.
func (f *Fake) FailNext(path string, errcode int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[path] = append(f.fail[path], errcode)
}

// Calls reports how many requests reached path, whatever their outcome.
func (f *Fake) Calls(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[path]
}

// TokensIssued reports how many distinct access tokens appID was given.
func (f *Fake) TokensIssued(appID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.apps[appID]; ok {
		return a.issued
	}
	return 0
}

// ExpireToken makes appID's current access token expire now: the next phone
// call with it gets 42001 and the next stable_token call issues a new one.
func (f *Fake) ExpireToken(appID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.apps[appID]; ok {
		if t, ok := f.tokens[a.current]; ok {
			t.expires = f.now()
		}
	}
}

// SetCountryCodeString makes getuserphonenumber send countryCode as a JSON
// string ("86") instead of a number (86, as in WeChat's own example).
func (f *Fake) SetCountryCodeString(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.countryString = on
}

// rid imitates the request id WeChat appends to every errmsg.
func rid(now time.Time) string {
	return fmt.Sprintf("%08x-%s-%s", uint32(now.Unix()), randomHex(4), randomHex(4))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }
