package wechat

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// WeChat errcodes the rest of wxidp branches on. The full list is WeChat's
// "global return codes"; these are the ones code2Session, stable_token,
// getuserphonenumber and getwxacodeunlimit actually return.
const (
	CodeBusy          = -1    // system busy; the only code retried, once
	CodeInvalidCode   = 40029 // login/phone code unknown, expired or for another appid
	CodeCodeUsed      = 40163 // code already exchanged
	CodeHighRisk      = 40226 // user blocked by WeChat's risk control
	CodeQuota         = 45011 // per-minute API quota reached
	CodeInvalidAppID  = 40013
	CodeInvalidSecret = 40125
	CodeMissingAppID  = 41002
	CodeMissingSecret = 41004
	CodeMissingCode   = 41008
	CodeInvalidToken  = 40001 // access_token unknown or replaced by a newer one
	CodeTokenExpired  = 42001
	CodeInvalidScene  = 40129 // wxacode scene empty, too long or with a forbidden character
	CodeInvalidPage   = 41030 // wxacode page not in the published version, or with a leading slash
	CodeInvalidArgs   = 40097 // e.g. wxacode env_version or width refused
	CodeDailyQuota    = 45009 // daily API quota reached
	CodeBadSignature  = 87009 // checksession: the session_key is not the user's current one
)

// ErrUnavailable is wrapped by every error that says "WeChat could not answer
// now" rather than "WeChat refused": network failures, timeouts, HTTP 5xx,
// errcode -1 and malformed answers. Callers map it to temporarily_unavailable.
var ErrUnavailable = errors.New("wechat: service unavailable")

// errMalformed is the cause of a TransportError for an answer that is not the
// JSON we expect. The body itself is never quoted: it may hold a session_key.
var errMalformed = errors.New("malformed response")

// maxMsgLen bounds the errmsg kept from WeChat, which is echoed into logs and
// errors.
const maxMsgLen = 256

// APIError is a refusal by WeChat: an answer with a non-zero errcode.
type APIError struct {
	Op   string // "code2session", "stable_token", "phone_number" or "wxacode"
	Code int    // WeChat errcode, see the Code* constants
	Msg  string // WeChat errmsg (e.g. "invalid code, rid: ..."), truncated
}

func (e *APIError) Error() string {
	return fmt.Sprintf("wechat %s: errcode %d: %s", e.Op, e.Code, e.Msg)
}

// Is makes errors.Is(err, ErrUnavailable) true for errcode -1, so callers
// need only one test for "try again later".
func (e *APIError) Is(target error) bool {
	return target == ErrUnavailable && e.Code == CodeBusy
}

// TransportError is a failure to get a usable answer from WeChat: the request
// could not be sent, timed out, got a non-200 status, or the body was not the
// expected JSON.
//
// It never holds Go's *url.Error, whose message embeds the request URL with
// the app secret or js_code; only the op name and a scrubbed cause remain.
type TransportError struct {
	Op         string
	StatusCode int // HTTP status if WeChat answered with something other than 200, else 0

	msg         string // scrubbed cause text
	cause       error  // inner error of the *url.Error, for errors.Is/As
	unavailable bool
	beforeSend  bool // the connection was never opened: provably nothing reached WeChat
}

func (e *TransportError) Error() string {
	return "wechat " + e.Op + ": " + e.msg
}

// Unwrap exposes the cause (so errors.Is(err, context.DeadlineExceeded) works)
// and ErrUnavailable when the failure is worth retrying later. A caller's own
// cancellation is not WeChat being unavailable, so context.Canceled is not
// marked.
func (e *TransportError) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	if e.unavailable {
		errs = append(errs, ErrUnavailable)
	}
	return errs
}

// transportError builds a TransportError from whatever http.Client.Do or
// the body read returned, removing the URL and any secret value.
func transportError(op string, err error, secrets []string) *TransportError {
	var ue *url.Error
	for errors.As(err, &ue) {
		err = ue.Err
	}
	return &TransportError{
		Op:          op,
		msg:         redact(err.Error(), secrets),
		cause:       err,
		unavailable: !errors.Is(err, context.Canceled),
	}
}

func statusError(op string, status int) *TransportError {
	return &TransportError{
		Op:          op,
		StatusCode:  status,
		msg:         fmt.Sprintf("unexpected HTTP status %d", status),
		unavailable: status >= 500 || status == 429,
	}
}

func malformed(op string) *TransportError {
	return &TransportError{Op: op, msg: errMalformed.Error(), cause: errMalformed, unavailable: true}
}

// redact removes every secret value from s and bounds its length. It is a
// second line of defence: the messages we keep should not hold secrets in
// the first place.
func redact(s string, secrets []string) string {
	for _, v := range secrets {
		if v != "" {
			s = strings.ReplaceAll(s, v, "[redacted]")
			if q := url.QueryEscape(v); q != v {
				s = strings.ReplaceAll(s, q, "[redacted]")
			}
		}
	}
	if len(s) > maxMsgLen {
		n := maxMsgLen
		for n > 0 && !utf8.RuneStart(s[n]) {
			n-- // cut on a rune boundary
		}
		s = s[:n] + "..."
	}
	return s
}
