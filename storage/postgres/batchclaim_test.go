package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxidp/wxidp/storage"
)

// TestWeChatCodeClaimsBatched: concurrent claims of wx.login codes share
// round trips and commits, and each still gets its own answer: a new code
// is claimed, a code claimed before is ErrAlreadyExists, and of many
// concurrent claims of one code, in one batch or across batches, exactly
// one wins.
func TestWeChatCodeClaimsBatched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rt := tracedStore(t)
	exp := time.Now().Add(10 * time.Minute)
	const n = 64
	for i := range n / 4 { // claimed before: a replay
		if err := s.ClaimWeChatCode(ctx, "wxa", fmt.Sprintf("old-%d", i), exp); err != nil {
			t.Fatal(err)
		}
	}

	var sameWins atomic.Int32
	checkBatched(t, rt, 3*n, func(i int) error {
		switch {
		case i < n: // new codes
			if err := s.ClaimWeChatCode(ctx, "wxa", fmt.Sprintf("new-%d", i), exp); err != nil {
				return fmt.Errorf("new-%d: %v", i, err)
			}
		case i < n+n/4: // replays
			key := fmt.Sprintf("old-%d", i-n)
			if err := s.ClaimWeChatCode(ctx, "wxa", key, exp); !errors.Is(err, storage.ErrAlreadyExists) {
				return fmt.Errorf("%s again: %v, want ErrAlreadyExists", key, err)
			}
		default: // one code, many times at once
			switch err := s.ClaimWeChatCode(ctx, "wxa", "same", exp); {
			case err == nil:
				sameWins.Add(1)
			case !errors.Is(err, storage.ErrAlreadyExists):
				return fmt.Errorf("same: %v, want nil or ErrAlreadyExists", err)
			}
		}
		return nil
	})
	if w := sameWins.Load(); w != 1 {
		t.Errorf("%d concurrent claims of one code won, want exactly 1", w)
	}
	// The same code under another app is another code.
	if err := s.ClaimWeChatCode(ctx, "wxb", "same", exp); err != nil {
		t.Errorf("same code under another app: %v", err)
	}
}
