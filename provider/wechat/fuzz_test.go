package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// What the fuzzed calls send. The seeds echo them back in errmsg, so the
// fuzzer starts from answers that test the redaction of errors.
const (
	fuzzSecret      = "fuzz-app-secret-0123456789abcdef"
	fuzzJSCode      = "fuzz-js-code-0a1b2c3d"
	fuzzAccessToken = "fuzz-access-token-9f8e7d"
	fuzzPhoneCode   = "fuzz-phone-code-5a6b7c"
)

// FuzzAnswer feeds arbitrary bodies, as WeChat's HTTP 200 answer, to
// Code2Session, StableToken and PhoneNumber. The decoding sits inside the
// HTTP call, so the body comes from a local server and the whole path is
// exercised: status check, errcode, the typed decode, looseString.
//
// Properties: no panic; every failure is an *APIError (non-zero errcode) or
// a *TransportError, and holds none of the secrets that call sent; a body that is not
// one JSON document never succeeds; a success is never missing the openid,
// session_key, token (with a positive lifetime) or phone number.
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{
		`{"openid":"o-1","session_key":"k","unionid":"u"}`,
		`{"openid":"o-1","session_key":""}`,
		`{"openid":"","session_key":"k"}`,
		`{"errcode":0,"errmsg":"ok","openid":"o","session_key":"k"}`,
		`{"errcode":40029,"errmsg":"invalid code ` + fuzzJSCode + `, rid: 1"}`,
		`{"errcode":40125,"errmsg":"invalid appsecret ` + fuzzSecret + `"}`,
		`{"errcode":40001,"errmsg":"bad token ` + fuzzAccessToken + ` ` + fuzzPhoneCode + `"}`,
		`{"errcode":-1,"errmsg":"system error"}`,
		`{"errcode":"40029"}`,
		`{"errcode":1e400}`,
		`{"access_token":"t","expires_in":7200}`,
		`{"access_token":"t","expires_in":0}`,
		`{"access_token":"t","expires_in":-5}`,
		`{"access_token":"t","expires_in":9223372036854775807}`,
		`{"access_token":"t","expires_in":"7200"}`,
		`{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"+8613800000000","purePhoneNumber":"13800000000","countryCode":86,"watermark":{"timestamp":1700000000,"appid":"wx1"}}}`,
		`{"phone_info":{"phoneNumber":"1","countryCode":"86","watermark":{"timestamp":"x"}}}`,
		`{"phone_info":{"phoneNumber":"1","countryCode":1.5e3,"watermark":{"timestamp":-1}}}`,
		`{"phone_info":{"phoneNumber":"1","countryCode":[],"watermark":null}}`,
		`{"phone_info":null}`,
		`{"phone_info":{"phoneNumber":""}}`,
		`{"openid":"o","session_key":"k"} trailing`,
		`<html>502 Bad Gateway</html>`,
		`null`,
		`[]`,
		"",
		"\xff\xfe{",
	} {
		f.Add([]byte(s))
	}

	var answer atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain") // as jscode2session does
		_, _ = w.Write(*answer.Load())
	}))
	f.Cleanup(srv.Close)
	c, err := New(srv.URL)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		answer.Store(&body)
		ctx := context.Background()
		valid := json.Valid(body)

		s, err := c.Code2Session(ctx, "wxfuzz", fuzzSecret, fuzzJSCode)
		if checkFuzzErr(t, err, valid, fuzzSecret, fuzzJSCode) && (s.OpenID == "" || s.SessionKey == "") {
			t.Fatalf("Code2Session succeeded with %v (empty openid or session_key)", s)
		}
		tok, err := c.StableToken(ctx, "wxfuzz", fuzzSecret, false)
		if checkFuzzErr(t, err, valid, fuzzSecret) && (tok.Token == "" || tok.ExpiresIn <= 0) {
			t.Fatalf("StableToken succeeded with %v (empty token or no lifetime)", tok)
		}
		p, err := c.PhoneNumber(ctx, fuzzAccessToken, fuzzPhoneCode)
		if checkFuzzErr(t, err, valid, fuzzAccessToken, fuzzPhoneCode) && p.PhoneNumber == "" {
			t.Fatalf("PhoneNumber succeeded with %+v (empty number)", p)
		}
	})
}

// checkFuzzErr checks a call's error against FuzzAnswer's properties and
// reports whether the call succeeded. secrets are the values the call sent.
func checkFuzzErr(t *testing.T, err error, validJSON bool, secrets ...string) bool {
	t.Helper()
	if err == nil {
		if !validJSON {
			t.Fatal("a body that is not one JSON document was accepted")
		}
		return true
	}
	var ae *APIError
	var te *TransportError
	switch {
	case errors.As(err, &ae):
		if ae.Code == 0 {
			t.Fatalf("APIError with errcode 0: %v", err)
		}
	case errors.As(err, &te):
		// A 200 answer we cannot use means "try later", never a refusal.
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("TransportError for an HTTP 200 answer does not wrap ErrUnavailable: %v", err)
		}
	default:
		t.Fatalf("error %T (%v) is neither *APIError nor *TransportError", err, err)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error %q holds secret %q", err, s)
		}
	}
	return false
}
