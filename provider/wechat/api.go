package wechat

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Session is what code2Session returns for one wx.login code.
//
// SessionKey is a secret between WeChat and us: it must never reach the
// client, a log or an error. String hides it for the careless %v.
type Session struct {
	OpenID     string
	UnionID    string // empty unless the app is bound to a WeChat Open Platform account
	SessionKey string
}

// String hides SessionKey.
func (s Session) String() string {
	return fmt.Sprintf("{OpenID:%s UnionID:%s SessionKey:[redacted]}", s.OpenID, s.UnionID)
}

// GoString keeps %#v from printing the session key too.
func (s Session) GoString() string { return "wechat.Session" + s.String() }

// Code2Session trades a wx.login code for the user's identity:
// GET /sns/jscode2session.
//
// The code is single use. The call is retried at most once, and only when
// WeChat answered errcode -1 or the connection could not be opened; after a
// timeout or a broken connection WeChat may have consumed the code, so the
// error (wrapping ErrUnavailable) is returned and the mini-program must call
// wx.login again.
func (c *Client) Code2Session(ctx context.Context, appID, secret, jsCode string) (Session, error) {
	const op = "code2session"
	var r struct {
		OpenID     string `json:"openid"`
		UnionID    string `json:"unionid"`
		SessionKey string `json:"session_key"`
	}
	err := c.do(ctx, call{
		op: op, appID: appID, method: http.MethodGet, path: "/sns/jscode2session",
		query: url.Values{
			"appid": {appID}, "secret": {secret}, "js_code": {jsCode},
			"grant_type": {"authorization_code"},
		},
		secrets: []string{secret, jsCode},
	}, &r)
	if err != nil {
		return Session{}, err
	}
	if r.OpenID == "" || r.SessionKey == "" {
		return Session{}, malformed(op)
	}
	return Session{OpenID: r.OpenID, UnionID: r.UnionID, SessionKey: r.SessionKey}, nil
}

// AccessToken is an app's API credential. Token is a secret; String hides it.
type AccessToken struct {
	Token     string
	ExpiresIn time.Duration // remaining lifetime when WeChat answered
}

// String hides Token.
func (t AccessToken) String() string {
	return fmt.Sprintf("{Token:[redacted] ExpiresIn:%s}", t.ExpiresIn)
}

// GoString keeps %#v from printing the token too.
func (t AccessToken) GoString() string { return "wechat.AccessToken" + t.String() }

// StableToken fetches the app's access token: POST /cgi-bin/stable_token.
//
// Without forceRefresh WeChat returns the current token until it expires, so
// calling it from several processes is harmless. forceRefresh invalidates the
// current token for every holder; use it only after WeChat rejected the token
// (40001/42001), and share the result (see DESIGN.md: one central cache).
//
// The call is retried at most once, only on errcode -1 or a connection that
// could not be opened, so a forced refresh never happens twice.
func (c *Client) StableToken(ctx context.Context, appID, secret string, forceRefresh bool) (AccessToken, error) {
	const op = "stable_token"
	var r struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	err := c.do(ctx, call{
		op: op, appID: appID, method: http.MethodPost, path: "/cgi-bin/stable_token",
		body: struct {
			GrantType    string `json:"grant_type"`
			AppID        string `json:"appid"`
			Secret       string `json:"secret"`
			ForceRefresh bool   `json:"force_refresh"`
		}{"client_credential", appID, secret, forceRefresh},
		secrets: []string{secret},
	}, &r)
	if err != nil {
		return AccessToken{}, err
	}
	// A lifetime too large for time.Duration would wrap to a negative one
	// (found by FuzzAnswer): as unusable as a missing one.
	if r.AccessToken == "" || r.ExpiresIn <= 0 || r.ExpiresIn > int64(math.MaxInt64/time.Second) {
		return AccessToken{}, malformed(op)
	}
	return AccessToken{Token: r.AccessToken, ExpiresIn: time.Duration(r.ExpiresIn) * time.Second}, nil
}

// Phone is the number a user agreed to share through the phone-number button.
type Phone struct {
	PhoneNumber     string // with country code for numbers outside mainland China
	PurePhoneNumber string // without country code
	CountryCode     string // "86"; WeChat sends a number or a string
	// WatermarkAppID is the appid WeChat issued the phone code for. The
	// caller must check it equals the client's appid: an access token says
	// nothing about which app's code was sent.
	WatermarkAppID string
	WatermarkTime  time.Time // when the user shared the number; zero if absent
}

// PhoneNumber trades a phone code (from the getPhoneNumber button) for the
// user's number: POST /wxa/business/getuserphonenumber.
//
// The code is single use; retries follow Code2Session's rule. 40001 and
// 42001 mean accessToken is stale: WeChat checks the token before it looks at
// the code, so the caller may refresh the token (StableToken with
// forceRefresh) and send the same code once more.
func (c *Client) PhoneNumber(ctx context.Context, accessToken, code string) (Phone, error) {
	const op = "phone_number"
	var r struct {
		PhoneInfo *struct {
			PhoneNumber     string      `json:"phoneNumber"`
			PurePhoneNumber string      `json:"purePhoneNumber"`
			CountryCode     looseString `json:"countryCode"`
			Watermark       struct {
				Timestamp looseString `json:"timestamp"`
				AppID     string      `json:"appid"`
			} `json:"watermark"`
		} `json:"phone_info"`
	}
	err := c.do(ctx, call{
		op: op, method: http.MethodPost, path: "/wxa/business/getuserphonenumber",
		query: url.Values{"access_token": {accessToken}},
		body: struct {
			Code string `json:"code"`
		}{code},
		secrets: []string{accessToken, code},
	}, &r)
	if err != nil {
		return Phone{}, err
	}
	pi := r.PhoneInfo
	if pi == nil || pi.PhoneNumber == "" {
		return Phone{}, malformed(op)
	}
	p := Phone{
		PhoneNumber:     pi.PhoneNumber,
		PurePhoneNumber: pi.PurePhoneNumber,
		CountryCode:     string(pi.CountryCode),
		WatermarkAppID:  pi.Watermark.AppID,
	}
	if ts, err := strconv.ParseInt(string(pi.Watermark.Timestamp), 10, 64); err == nil && ts > 0 {
		p.WatermarkTime = time.Unix(ts, 0)
	}
	return p, nil
}

// looseString accepts a JSON string or number: WeChat's documentation types
// countryCode as a string while its own example, and real answers, send 86.
type looseString string

func (s *looseString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = looseString(v)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*s = looseString(n.String())
	return nil
}

// CheckSession asks whether sessionKey is still the user's current
// session_key: GET /wxa/checksession with its signature, hmac_sha256 of an
// empty message keyed by the session_key (the key itself never leaves).
// A replaced or expired key is (false, nil); a failed call is an error.
func (c *Client) CheckSession(ctx context.Context, accessToken, openID, sessionKey string) (bool, error) {
	mac := hmac.New(sha256.New, []byte(sessionKey))
	sig := hex.EncodeToString(mac.Sum(nil))
	var r struct{}
	err := c.do(ctx, call{
		op: "checksession", method: http.MethodGet, path: "/wxa/checksession",
		query: url.Values{
			"access_token": {accessToken}, "openid": {openID}, "signature": {sig}, "sig_method": {"hmac_sha256"},
		},
		secrets: []string{accessToken, sig},
	}, &r)
	var api *APIError
	if errors.As(err, &api) && api.Code == CodeBadSignature {
		return false, nil
	}
	return err == nil, err
}
