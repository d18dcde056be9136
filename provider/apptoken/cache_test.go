package apptoken

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/provider/wechat"
	"github.com/wxidp/wxidp/provider/wechat/wechattest"
	"github.com/wxidp/wxidp/storage/memory"
)

// tokenRig is a shared store (as the database is for every process) and a
// fake WeChat; each Cache made from it is one process.
type tokenRig struct {
	store  *memory.Store
	wx     *wechattest.Server
	client *wechat.Client
	cipher *keys.Cipher
	now    time.Time
	mu     sync.Mutex
}

func newTokenRig(t *testing.T) *tokenRig {
	r := &tokenRig{store: memory.New(), wx: wechattest.NewServer(t), now: time.Now()}
	r.wx.AddApp("wxapp", "s")
	r.wx.SetNow(r.clock)
	var err error
	if r.client, err = wechat.New(r.wx.URL); err != nil {
		t.Fatal(err)
	}
	if r.cipher, err = keys.NewCipher([]string{strings.Repeat("k", 32)}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *tokenRig) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *tokenRig) advance(d time.Duration) {
	r.mu.Lock()
	r.now = r.now.Add(d)
	r.mu.Unlock()
}

func (r *tokenRig) process() *Cache {
	return New(r.store, r.client, r.cipher, r.clock)
}

func TestAppTokensSharedAcrossProcesses(t *testing.T) {
	t.Parallel()
	r := newTokenRig(t)
	ctx := context.Background()
	procs := []*Cache{r.process(), r.process(), r.process()}

	// Many concurrent first uses in several processes: one WeChat token.
	var wg sync.WaitGroup
	got := make(chan string, 30)
	for i := range 30 {
		wg.Go(func() {
			tok, err := procs[i%3].Get(ctx, "wxapp", "s", "")
			if err != nil {
				t.Error(err)
				return
			}
			got <- tok
		})
	}
	wg.Wait()
	close(got)
	first := ""
	for tok := range got {
		if first == "" {
			first = tok
		}
		if tok != first {
			t.Fatal("processes got different tokens")
		}
	}
	if n := r.wx.TokensIssued("wxapp"); n != 1 {
		t.Fatalf("WeChat issued %d tokens for concurrent first uses, want 1", n)
	}

	// In the last minutes before expiry, a refresh happens, but not once per
	// request: at most once per minute per process.
	r.advance(2*time.Hour - 4*time.Minute)
	before := r.wx.Calls(wechattest.PathStableToken)
	for range 50 {
		if _, err := procs[0].Get(ctx, "wxapp", "s", ""); err != nil {
			t.Fatal(err)
		}
	}
	if calls := r.wx.Calls(wechattest.PathStableToken) - before; calls > 1 {
		t.Fatalf("%d stable_token calls near expiry from one process within a minute, want at most 1", calls)
	}

	// A token WeChat rejects is replaced once, by whichever process sees
	// it first; the others then use the replacement.
	cur, _ := procs[1].Get(ctx, "wxapp", "s", "")
	replaced, err := procs[1].Get(ctx, "wxapp", "s", cur)
	if err != nil || replaced == cur {
		t.Fatalf("stale token not replaced: %v", err)
	}
	issued := r.wx.TokensIssued("wxapp")
	again, err := procs[2].Get(ctx, "wxapp", "s", cur)
	if err != nil || again != replaced || r.wx.TokensIssued("wxapp") != issued {
		t.Fatalf("a second process re-replaced the token (%v)", err)
	}
}

func TestAppTokensFailedRefresh(t *testing.T) {
	t.Parallel()
	r := newTokenRig(t)
	ctx := context.Background()
	p := r.process()
	r.wx.FailNext(wechattest.PathStableToken, wechat.CodeInvalidSecret)
	if _, err := p.Get(ctx, "wxapp", "s", ""); err == nil {
		t.Fatal("a failed first fetch returned a token")
	}
	// The failed refresh's lease spaces out retries; once it runs out, the
	// next request fetches a token.
	r.advance(leaseFor + time.Second)
	tok, err := p.Get(ctx, "wxapp", "s", "")
	if err != nil {
		t.Fatalf("after the lease ran out: %v", err)
	}
	// Near expiry WeChat fails: the still-valid token keeps working.
	r.advance(2*time.Hour - 3*time.Minute)
	r.wx.FailNext(wechattest.PathStableToken, wechat.CodeBusy)
	r.wx.FailNext(wechattest.PathStableToken, wechat.CodeBusy)
	if got, err := r.process().Get(ctx, "wxapp", "s", ""); err != nil || got != tok {
		t.Fatalf("a failed early refresh broke a valid token: %v", err)
	}
}
