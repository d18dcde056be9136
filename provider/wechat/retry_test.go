package wechat

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

func TestBusyRetriedOnceThenSucceeds(t *testing.T) {
	srv, c := setup(t)
	srv.FailNext(wechattest.PathCode2Session, CodeBusy)
	s, err := c.Code2Session(context.Background(), testApp, testSecret, srv.Login(testApp, "o-a", ""))
	if err != nil || s.OpenID != "o-a" {
		t.Fatalf("got %v, %v; want success after one retry", s, err)
	}
	if n := srv.Calls(wechattest.PathCode2Session); n != 2 {
		t.Fatalf("calls = %d, want 2", n)
	}
}

func TestBusyRetriedOnceThenFails(t *testing.T) {
	for _, path := range []string{wechattest.PathCode2Session, wechattest.PathStableToken, wechattest.PathPhoneNumber} {
		t.Run(path, func(t *testing.T) {
			srv, c := setup(t)
			ctx := context.Background()
			tok, err := c.StableToken(ctx, testApp, testSecret, false)
			if err != nil {
				t.Fatal(err)
			}
			before := srv.Calls(path)
			for range 3 {
				srv.FailNext(path, CodeBusy)
			}
			switch path {
			case wechattest.PathCode2Session:
				_, err = c.Code2Session(ctx, testApp, testSecret, srv.Login(testApp, "o", ""))
			case wechattest.PathStableToken:
				_, err = c.StableToken(ctx, testApp, testSecret, false)
			case wechattest.PathPhoneNumber:
				_, err = c.PhoneNumber(ctx, tok.Token, srv.PhoneCode(testApp, "13800138000"))
			}
			wantCode(t, err, CodeBusy)
			if !errors.Is(err, ErrUnavailable) {
				t.Error("errcode -1 must be ErrUnavailable")
			}
			if n := srv.Calls(path) - before; n != 2 {
				t.Fatalf("calls = %d, want exactly 2 (one retry)", n)
			}
		})
	}
}

// refusingDialer fails the first `refuse` dials with ECONNREFUSED, as a
// closed port does, then dials for real.
type refusingDialer struct {
	refuse int32
	dials  atomic.Int32
}

func (d *refusingDialer) client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if d.dials.Add(1) <= d.refuse {
			return nil, &net.OpError{Op: "dial", Net: network, Err: &net.OpError{Op: "connect", Err: syscall.ECONNREFUSED}}
		}
		var nd net.Dialer
		return nd.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr}
}

func TestConnectionRefusedRetriedOnce(t *testing.T) {
	t.Run("then succeeds", func(t *testing.T) {
		d := &refusingDialer{refuse: 1}
		srv, c := setup(t, WithHTTPClient(d.client()))
		code := srv.Login(testApp, "o-a", "")
		if _, err := c.Code2Session(context.Background(), testApp, testSecret, code); err != nil {
			t.Fatal(err)
		}
		if d.dials.Load() != 2 || srv.Calls(wechattest.PathCode2Session) != 1 {
			t.Fatalf("dials = %d, calls = %d; want 2 and 1", d.dials.Load(), srv.Calls(wechattest.PathCode2Session))
		}
	})
	t.Run("then fails", func(t *testing.T) {
		d := &refusingDialer{refuse: 10}
		srv, c := setup(t, WithHTTPClient(d.client()))
		code := srv.Login(testApp, "o-a", "")
		_, err := c.Code2Session(context.Background(), testApp, testSecret, code)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("err = %v, want ErrUnavailable wrapping ECONNREFUSED", err)
		}
		if d.dials.Load() != 2 {
			t.Fatalf("dials = %d, want 2", d.dials.Load())
		}
		noSecrets(t, err, testSecret, code)
	})
	t.Run("real closed port", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, _ := New("http://" + addr)
		_, err = c.Code2Session(context.Background(), testApp, testSecret, "the-js-code")
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("err = %v, want a refused connection", err)
		}
		noSecrets(t, err, testSecret, "the-js-code")
	})
}

// TestTimeoutNotRetried: WeChat may process a request whose answer we gave
// up on, so the code is burnt and a retry would only earn 40163.
func TestTimeoutNotRetried(t *testing.T) {
	srv, c := setup(t, WithTimeout(50*time.Millisecond))
	srv.SetDelay(300 * time.Millisecond)
	code := srv.Login(testApp, "o-a", "")
	_, err := c.Code2Session(context.Background(), testApp, testSecret, code)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	noSecrets(t, err, testSecret, code)

	time.Sleep(400 * time.Millisecond) // let the fake finish the abandoned request
	if n := srv.Calls(wechattest.PathCode2Session); n != 1 {
		t.Fatalf("calls = %d, want 1: no retry after a timeout", n)
	}
	srv.SetDelay(0)
	_, err = c.Code2Session(context.Background(), testApp, testSecret, code)
	wantCode(t, err, CodeCodeUsed) // which is why we did not retry
}

func TestCallerDeadline(t *testing.T) {
	srv, c := setup(t)
	srv.SetDelay(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := c.StableToken(ctx, testApp, testSecret, false)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	noSecrets(t, err, testSecret)
}

func TestCancellation(t *testing.T) {
	t.Run("before the call", func(t *testing.T) {
		srv, c := setup(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Code2Session(ctx, testApp, testSecret, srv.Login(testApp, "o", ""))
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want Canceled and not ErrUnavailable", err)
		}
		if n := srv.Calls(wechattest.PathCode2Session); n != 0 {
			t.Fatalf("calls = %d, want 0", n)
		}
	})
	t.Run("in flight", func(t *testing.T) {
		srv, c := setup(t)
		srv.SetDelay(200 * time.Millisecond)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(30*time.Millisecond, cancel)
		code := srv.Login(testApp, "o", "")
		_, err := c.Code2Session(ctx, testApp, testSecret, code)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want Canceled", err)
		}
		noSecrets(t, err, testSecret, code)
	})
}

// TestBrokenKeepAliveNotResent: net/http resends a bodiless GET by itself
// when a reused connection dies before the answer, although the server may
// have processed it. The client must stop that for single-use codes.
func TestBrokenKeepAliveNotResent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var requests, conns atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					requests.Add(1)
					if i > 0 {
						return // read the second request, then drop the connection unanswered
					}
					body := `{"openid":"o","session_key":"k"}`
					_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "+
						strconv.Itoa(len(body))+"\r\n\r\n"+body)
				}
			}()
		}
	}()

	c, _ := New("http://" + ln.Addr().String())
	ctx := context.Background()
	if _, err := c.Code2Session(ctx, testApp, testSecret, "code-1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the connection return to the idle pool
	_, err = c.Code2Session(ctx, testApp, testSecret, "code-2")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	noSecrets(t, err, testSecret, "code-2")
	if requests.Load() != 2 || conns.Load() != 1 {
		t.Fatalf("server saw %d requests on %d connections; want 2 on 1 (no silent resend)", requests.Load(), conns.Load())
	}
}

// TestBadAnswers: anything but WeChat's JSON is ErrUnavailable (5xx) or a
// plain failure (4xx), never retried, and never quotes the body.
func TestBadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		unavai bool
	}{
		{"502", http.StatusBadGateway, "<html>bad gateway</html>", true},
		{"503", http.StatusServiceUnavailable, "", true},
		{"404", http.StatusNotFound, "not found", false},
		{"redirect", http.StatusFound, "", false},
		{"not json", http.StatusOK, "<html>session_key=SECRETKEY</html>", true},
		{"truncated", http.StatusOK, `{"openid":"o","session_key":"SECRETKEY"`, true},
		{"no openid", http.StatusOK, `{"session_key":"SECRETKEY"}`, true},
		{"too large", http.StatusOK, `{"openid":"o","session_key":"SECRETKEY","x":"` + strings.Repeat("a", maxBody) + `"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if tc.status == http.StatusFound {
					w.Header().Set("Location", "http://elsewhere.invalid/steal")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer ts.Close()
			c, _ := New(ts.URL)
			_, err := c.Code2Session(context.Background(), testApp, testSecret, "js-code-x")
			if err == nil {
				t.Fatal("want an error")
			}
			if errors.Is(err, ErrUnavailable) != tc.unavai {
				t.Fatalf("err = %v, ErrUnavailable = %v, want %v", err, !tc.unavai, tc.unavai)
			}
			var te *TransportError
			if !errors.As(err, &te) || te.Op != "code2session" {
				t.Fatalf("err = %#v, want *TransportError", err)
			}
			if tc.status != http.StatusOK && te.StatusCode != tc.status {
				t.Errorf("StatusCode = %d", te.StatusCode)
			}
			if calls.Load() != 1 {
				t.Errorf("calls = %d, want 1", calls.Load())
			}
			noSecrets(t, err, testSecret, "js-code-x", "SECRETKEY")
		})
	}
}
