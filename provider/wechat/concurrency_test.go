package wechat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// TestConcurrentUse drives the client and the fake from many goroutines;
// run under -race it checks both are safe for concurrent use.
func TestConcurrentUse(t *testing.T) {
	srv, c := setup(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 50 {
		wg.Go(func() {
			open := fmt.Sprintf("o-%d", i)
			s, err := c.Code2Session(ctx, testApp, testSecret, srv.Login(testApp, open, ""))
			if err == nil && s.OpenID != open {
				err = fmt.Errorf("openid %s, want %s", s.OpenID, open)
			}
			errs <- err
		})
		wg.Go(func() {
			tok, err := c.StableToken(ctx, testApp, testSecret, i%10 == 0)
			if err == nil {
				_, err = c.PhoneNumber(ctx, tok.Token, srv.PhoneCode(testApp, "13800138000"))
				var ae *APIError
				if errors.As(err, &ae) && ae.Code == CodeInvalidToken {
					err = nil // a concurrent forced refresh replaced the token: expected
				}
			}
			errs <- err
		})
		wg.Go(func() {
			srv.Calls(wechattest.PathCode2Session)
			srv.TokensIssued(testApp)
			srv.SessionKey(testApp, "o-1")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestSameCodeRace: one code exchanged by many callers at once succeeds
// exactly once; everyone else is told it was used.
func TestSameCodeRace(t *testing.T) {
	srv, c := setup(t)
	code := srv.Login(testApp, "o-a", "")
	var ok, used atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := c.Code2Session(context.Background(), testApp, testSecret, code)
			var ae *APIError
			switch {
			case err == nil:
				ok.Add(1)
			case errors.As(err, &ae) && ae.Code == CodeCodeUsed:
				used.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || used.Load() != 19 {
		t.Fatalf("successes = %d, used = %d; want 1 and 19", ok.Load(), used.Load())
	}
}

// TestLogsHoldNoSecrets: failures and retries are logged with op, appid and
// errcode only.
func TestLogsHoldNoSecrets(t *testing.T) {
	var buf bytes.Buffer // the handler serializes writes
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, c := setup(t, WithLogger(log))
	ctx := context.Background()

	code := srv.Login(testApp, "o-a", "")
	srv.FailNext(wechattest.PathCode2Session, CodeBusy)
	s, err := c.Code2Session(ctx, testApp, testSecret, code)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Code2Session(ctx, testApp, testSecret, code) // 40163
	_, _ = c.Code2Session(ctx, testApp, "wrong-secret", srv.Login(testApp, "o-a", ""))
	tok, _ := c.StableToken(ctx, testApp, testSecret, false)
	phone := srv.PhoneCode(testApp, "13800138000")
	srv.ExpireToken(testApp)
	_, _ = c.PhoneNumber(ctx, tok.Token, phone)

	out := buf.String()
	for _, secret := range []string{testSecret, "wrong-secret", code, s.SessionKey, tok.Token, phone} {
		if strings.Contains(out, secret) {
			t.Fatalf("log holds a secret %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"wechat call retried", "errcode=-1", "errcode=40163", "errcode=40125", "errcode=42001", "appid=" + testApp, "op=phone_number"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
