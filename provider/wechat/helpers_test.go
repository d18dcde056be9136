package wechat

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

const (
	testApp    = "wx00000000000000a1"
	testSecret = "s3cr3t-0123456789abcdef0123456789"
	otherApp   = "wx00000000000000b2"
)

// setup starts a fake WeChat with testApp and otherApp and a client of it.
func setup(t *testing.T, opts ...Option) (*wechattest.Server, *Client) {
	t.Helper()
	srv := wechattest.NewServer(t)
	srv.AddApp(testApp, testSecret)
	srv.AddApp(otherApp, "other-"+testSecret)
	c, err := New(srv.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// wantCode fails unless err is an *APIError with errcode code.
func wantCode(t *testing.T, err error, code int) *APIError {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("err = %v, want errcode %d", err, code)
	}
	return ae
}

// noSecrets fails if any secret shows in err's text, in that of anything it
// wraps, or in its %+v / %#v forms.
func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	texts := []string{fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		texts = append(texts, e.Error())
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		}
	}
	walk(err)
	for _, s := range secrets {
		for _, txt := range texts {
			if s != "" && strings.Contains(txt, s) {
				t.Fatalf("error text %q contains secret %q", txt, s)
			}
		}
	}
}

// clock is a settable time source for the fake.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
