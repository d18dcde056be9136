package wechat

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechatfake"
)

// TestConnectionsReusedUnderConcurrency: logins arrive many at a time, and
// each opening a new connection to WeChat costs a TCP and TLS handshake
// (Go's default keeps only 2 idle connections per host; the benchmark saw
// 8 % of the server's CPU in dialing and closing). After a first burst of
// concurrent calls, later bursts of the same size reuse its connections.
func TestConnectionsReusedUnderConcurrency(t *testing.T) {
	t.Parallel()
	f := wechatfake.New()
	f.AddApp(testApp, testSecret)
	var opened atomic.Int64
	ts := httptest.NewUnstartedServer(f)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	c, err := New(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	const burst = 32
	for round := range 4 {
		var wg sync.WaitGroup
		for i := range burst {
			wg.Go(func() {
				code := f.Login(testApp, fmt.Sprintf("o-%d-%d", round, i), "")
				if _, err := c.Code2Session(context.Background(), testApp, testSecret, code); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if n := opened.Load(); n > 2*burst {
		t.Errorf("4 bursts of %d concurrent calls opened %d connections; want the first burst's reused (at most %d)", burst, n, 2*burst)
	}
}
