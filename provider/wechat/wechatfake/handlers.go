package wechatfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// errmsgs are the texts the real API sends; a ", rid: ..." suffix is added.
var errmsgs = map[int]string{
	-1:    "system error",
	40001: "invalid credential, access_token is invalid or not latest",
	40002: "invalid grant_type",
	40013: "invalid appid",
	40029: "invalid code",
	40097: "invalid args",
	40125: "invalid appsecret",
	40129: "invalid scene",
	40163: "code been used",
	40226: "high risk user",
	41001: "access_token missing",
	41002: "appid missing",
	41004: "appsecret missing",
	41008: "missing code",
	41030: "invalid page",
	42001: "access_token expired",
	45009: "reach max api daily quota limit",
	45011: "api minute-quota reach limit  mustslower  retry next minute",
	47001: "data format error",
	85096: "scancode_time not allowed",
	87009: "invalid signature",
}

// maxRequest bounds request bodies; real ones are under 200 bytes.
const maxRequest = 64 << 10

// apiFunc handles one WeChat request under f.mu. It returns the success body
// or a non-zero errcode.
type apiFunc func(q url.Values, body []byte, now time.Time) (resp any, errcode int)

// api wraps an endpoint with what every WeChat endpoint does: count the call,
// check the method, wait the programmed delay, answer an injected failure,
// and write refusals as HTTP 200 {"errcode","errmsg"}.
func (f *Fake) api(method string, h apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		f.mu.Lock()
		f.calls[path]++
		delay := f.delay
		f.mu.Unlock()
		if r.Method != method {
			w.Header().Set("Allow", method)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Read the body before the delay: a client that gives up meanwhile
		// must not stop the request from being processed.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequest))
		if err != nil {
			http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
			return
		}
		if delay > 0 {
			time.Sleep(delay)
		}

		f.mu.Lock()
		now := f.now()
		var resp any
		code := 0
		if q := f.fail[path]; len(q) > 0 {
			code, f.fail[path] = q[0], q[1:]
		} else {
			resp, code = h(r.URL.Query(), body, now)
		}
		f.mu.Unlock()

		// A picture is drawn here, outside f.mu: it takes milliseconds.
		if b, ok := resp.(binaryAnswer); ok {
			ct, data, err := b.render()
			if err == nil {
				w.Header().Set("Content-Type", ct)
				_, _ = w.Write(data)
				return
			}
			code = -1 // the fake failed; WeChat would say "system error"
		}
		if code != 0 {
			msg, ok := errmsgs[code]
			if !ok {
				msg = "injected error"
			}
			resp = map[string]any{"errcode": code, "errmsg": msg + ", rid: " + rid(now)}
		}
		// jscode2session really labels its JSON text/plain; the others use
		// WeChat's odd "encoding=utf-8" parameter.
		ct := "application/json; encoding=utf-8"
		if path == PathCode2Session {
			ct = "text/plain"
		}
		w.Header().Set("Content-Type", ct)
		_ = json.NewEncoder(w).Encode(resp)
	}
}

// code2Session is GET /sns/jscode2session. Checks run in the real API's
// order: parameters, then app credentials, then the code.
func (f *Fake) code2Session(q url.Values, _ []byte, now time.Time) (any, int) {
	appID, secret, jsCode := q.Get("appid"), q.Get("secret"), q.Get("js_code")
	switch {
	case appID == "":
		return nil, 41002
	case secret == "":
		return nil, 41004
	case jsCode == "":
		return nil, 41008
	}
	if code := f.checkApp(appID, secret); code != 0 {
		return nil, code
	}
	if q.Get("grant_type") != "authorization_code" {
		return nil, 40002
	}
	lc, ok := f.codes[jsCode]
	switch {
	case !ok || lc.appID != appID:
		return nil, 40029
	case lc.used:
		return nil, 40163
	case !now.Before(lc.expires):
		return nil, 40029
	}
	lc.used = true
	resp := map[string]string{"openid": lc.openID, "session_key": lc.sessionKey}
	if lc.unionID != "" {
		resp["unionid"] = lc.unionID
	}
	return resp, 0
}

// stableToken is POST /cgi-bin/stable_token.
func (f *Fake) stableToken(_ url.Values, body []byte, now time.Time) (any, int) {
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, 47001
	}
	switch {
	case req.GrantType != "client_credential":
		return nil, 40002
	case req.AppID == "":
		return nil, 41002
	case req.Secret == "":
		return nil, 41004
	}
	if code := f.checkApp(req.AppID, req.Secret); code != 0 {
		return nil, code
	}
	a := f.apps[req.AppID]
	t, ok := f.tokens[a.current]
	if req.ForceRefresh || !ok || !now.Before(t.expires) {
		if ok {
			t.revoked = req.ForceRefresh // a forced refresh kills the old token at once
		}
		a.current = strconv.Itoa(a.issued+1) + "_" + randomHex(32)
		a.issued++
		t = &token{appID: req.AppID, expires: now.Add(tokenTTL)}
		f.tokens[a.current] = t
	}
	// expires_in is the remaining lifetime, not always 7200: the same token
	// is handed out until it expires.
	left := (t.expires.Sub(now) + time.Second - 1) / time.Second
	return map[string]any{"access_token": a.current, "expires_in": int64(left)}, 0
}

// phoneNumber is POST /wxa/business/getuserphonenumber. The access token is
// checked before the code, so a stale token leaves the code unused.
func (f *Fake) phoneNumber(q url.Values, body []byte, now time.Time) (any, int) {
	t, code := f.checkToken(q.Get("access_token"), now)
	if code != 0 {
		return nil, code
	}
	var req struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, 47001
	}
	if req.Code == "" {
		return nil, 41008
	}
	pc, ok := f.phoneCodes[req.Code]
	switch {
	case !ok || pc.appID != t.appID || !now.Before(pc.expires):
		return nil, 40029
	case pc.used:
		return nil, 40163
	}
	pc.used = true
	var country any = pc.country
	if n, err := strconv.Atoi(pc.country); err == nil && !f.countryString {
		country = n
	}
	return map[string]any{
		"errcode": 0,
		"errmsg":  "ok",
		"phone_info": map[string]any{
			"phoneNumber":     pc.number,
			"purePhoneNumber": pc.pure,
			"countryCode":     country,
			"watermark":       map[string]any{"timestamp": pc.issued.Unix(), "appid": pc.appID},
		},
	}, 0
}

// checkApp validates app credentials; f.mu is held.
func (f *Fake) checkApp(appID, secret string) int {
	a, ok := f.apps[appID]
	switch {
	case !ok:
		return 40013
	case a.secret != secret:
		return 40125
	}
	return 0
}

// fakeLogin is POST /_fake/login: wx.login for a developer with curl.
func (f *Fake) fakeLogin(w http.ResponseWriter, r *http.Request) {
	in, ok := f.fakeInput(w, r, "appid", "openid")
	if ok {
		writeFake(w, http.StatusOK, "code", f.Login(in["appid"], in["openid"], in["unionid"]))
	}
}

// fakeSessionKey is POST /_fake/sessionkey: the session_key the user's
// mini-program holds after its latest wx.login, which WeChat uses to
// encrypt the data it hands the mini-program (the SDK's tests encrypt with
// it, as WeChat would).
func (f *Fake) fakeSessionKey(w http.ResponseWriter, r *http.Request) {
	if in, ok := f.fakeInput(w, r, "appid", "openid"); ok {
		writeFake(w, http.StatusOK, "session_key", f.SessionKey(in["appid"], in["openid"]))
	}
}

// fakePhoneCode is POST /_fake/phonecode: the getPhoneNumber button.
func (f *Fake) fakePhoneCode(w http.ResponseWriter, r *http.Request) {
	in, ok := f.fakeInput(w, r, "appid", "phone")
	if ok {
		writeFake(w, http.StatusOK, "code", f.PhoneCode(in["appid"], in["phone"]))
	}
}

// fakeInput reads a form or JSON body, requires the named fields and a
// registered appid, and answers 400 otherwise.
func (f *Fake) fakeInput(w http.ResponseWriter, r *http.Request, required ...string) (map[string]string, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxRequest)
	in := map[string]string{}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			writeFake(w, http.StatusBadRequest, "error", "body must be a JSON object of strings")
			return nil, false
		}
	} else {
		if err := r.ParseForm(); err != nil {
			writeFake(w, http.StatusBadRequest, "error", "malformed form")
			return nil, false
		}
		for k := range r.Form {
			in[k] = r.Form.Get(k)
		}
	}
	for _, k := range required {
		if in[k] == "" {
			writeFake(w, http.StatusBadRequest, "error", k+" is required")
			return nil, false
		}
	}
	f.mu.Lock()
	_, known := f.apps[in["appid"]]
	f.mu.Unlock()
	if !known {
		writeFake(w, http.StatusBadRequest, "error", "unknown appid")
		return nil, false
	}
	return in, true
}

func writeFake(w http.ResponseWriter, status int, key, value string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{key: value})
}

// checkSession answers GET /wxa/checksession: is the signature
// hmac_sha256(key: session_key, message: "") of the user's current
// session_key? Only the latest login's key is current; an earlier one was
// replaced by it, as WeChat does.
func (f *Fake) checkSession(q url.Values, _ []byte, now time.Time) (any, int) {
	t, code := f.checkToken(q.Get("access_token"), now)
	if code != 0 {
		return nil, code
	}
	openID, sig := q.Get("openid"), q.Get("signature")
	if openID == "" || sig == "" || q.Get("sig_method") != "hmac_sha256" {
		return nil, 40097
	}
	key := f.apps[t.appID].sessionKeys[openID]
	mac := hmac.New(sha256.New, []byte(key))
	if key == "" || !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(sig)) {
		return nil, 87009
	}
	return map[string]any{"errcode": 0, "errmsg": "ok"}, 0
}
