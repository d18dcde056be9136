package wechat

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Observer is told about every request sent to WeChat (a retry is a second
// request): the op ("code2session", "stable_token", "phone_number" or
// "wxacode"), the outcome and how long it took. errcode is "0" for success,
// a known WeChat errcode ("40029", "-1", ...), "other" for any errcode not in
// that fixed set and "transport" for a failure to get a WeChat answer at
// all; so an observer feeding metrics gets a bounded set of values whatever
// WeChat answers.
type Observer func(op, errcode string, d time.Duration)

// WithObserver sets the Observer of every request (default: none). It is
// called synchronously, so it must be quick.
func WithObserver(o Observer) Option {
	return func(c *Client) { c.observe = o }
}

// knownCodes are the errcodes the four APIs document (see errors.go and
// WeChat's global return codes); any other value is reported as "other".
var knownCodes = map[int]bool{
	CodeBusy: true, CodeInvalidCode: true, CodeCodeUsed: true, CodeHighRisk: true,
	CodeQuota: true, CodeInvalidAppID: true, CodeInvalidSecret: true, CodeMissingAppID: true,
	CodeMissingSecret: true, CodeMissingCode: true, CodeInvalidToken: true, CodeTokenExpired: true,
	CodeDailyQuota: true, CodeInvalidScene: true, CodeInvalidPage: true, CodeInvalidArgs: true,
	40014: true, // invalid access_token
	40164: true, // caller's IP address not on the app's allow-list
}

// errcodeLabel maps the result of a request to the Observer's errcode.
func errcodeLabel(err error) string {
	if err == nil {
		return "0"
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if knownCodes[ae.Code] {
			return strconv.Itoa(ae.Code)
		}
		return "other"
	}
	return "transport"
}

// timedOnce is once, reported to the observer.
func (c *Client) timedOnce(ctx context.Context, cl call, body []byte, out any) error {
	if c.observe == nil {
		return c.once(ctx, cl, body, out)
	}
	start := time.Now()
	err := c.once(ctx, cl, body, out)
	c.observe(cl.op, errcodeLabel(err), time.Since(start))
	return err
}
