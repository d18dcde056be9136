package wechat

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// recorder collects what an Observer is told.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) observe(op, errcode string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d < 0 {
		errcode += "(negative duration)"
	}
	r.got = append(r.got, op+" "+errcode)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

func TestObserverSeesEveryRequest(t *testing.T) {
	rec := &recorder{}
	srv, c := setup(t, WithObserver(rec.observe))
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		want []string
	}{
		{"success", func() error {
			_, err := c.Code2Session(ctx, testApp, testSecret, srv.Login(testApp, "o-a", ""))
			return err
		}, []string{"code2session 0"}},
		{"known errcode", func() error {
			_, err := c.Code2Session(ctx, testApp, testSecret, "no-such-code")
			return err
		}, []string{"code2session 40029"}},
		{"busy, retried", func() error {
			srv.FailNext(wechattest.PathCode2Session, CodeBusy)
			_, err := c.Code2Session(ctx, testApp, testSecret, srv.Login(testApp, "o-b", ""))
			return err
		}, []string{"code2session -1", "code2session 0"}},
		{"unknown errcode", func() error {
			srv.FailNext(wechattest.PathStableToken, 48001)
			_, err := c.StableToken(ctx, testApp, testSecret, false)
			return err
		}, []string{"stable_token other"}},
		{"phone number", func() error {
			tok, err := c.StableToken(ctx, testApp, testSecret, false)
			if err != nil {
				return err
			}
			_, err = c.PhoneNumber(ctx, tok.Token, srv.PhoneCode(testApp, "13800138000"))
			return err
		}, []string{"stable_token 0", "phone_number 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = tc.call()
			if got := rec.take(); !slices.Equal(got, tc.want) {
				t.Fatalf("observed %q, want %q", got, tc.want)
			}
		})
	}
}

func TestObserverTransportFailure(t *testing.T) {
	rec := &recorder{}
	// Port 1 on loopback refuses connections: a dial failure, retried once.
	c, err := New("http://127.0.0.1:1", WithObserver(rec.observe))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StableToken(context.Background(), testApp, testSecret, false); err == nil {
		t.Fatal("want an error")
	}
	if got, want := rec.take(), []string{"stable_token transport", "stable_token transport"}; !slices.Equal(got, want) {
		t.Fatalf("observed %q, want %q", got, want)
	}
}
