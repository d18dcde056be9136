package storagetest

import (
	"context"
	"errors"
	"testing"

	"github.com/wxidp/wxidp/storage"
)

// testLoginRetire: a browser that asks for a new code retires the old
// ticket whatever its state, so whoever saw the old QR code can no longer
// scan, approve or complete it; another browser cannot retire it.
func testLoginRetire(t *testing.T, su suite) {
	su.run(t, "Retire", func(t *testing.T, ctx context.Context, s storage.Store) {
		f := newLoginFixture(t, ctx, s)
		waiting := f.mustCreate(t, ctx, s, "ticket-waiting-00000000000000000")
		approved := f.mustCreate(t, ctx, s, "ticket-approved-0000000000000000")
		f.mustScan(t, ctx, s, approved.ID, f.alice)
		f.mustDecide(t, ctx, s, approved.ID, f.alice, storage.TicketApproved)

		if err := s.RetireLoginTicket(ctx, waiting.ID, storage.HashKey("another browser")); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("retire by another browser: %v, want ErrNotFound", err)
		}
		if err := s.RetireLoginTicket(ctx, "unknown-ticket-00000000000000000", waiting.BrowserHash); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("retire an unknown ticket: %v, want ErrNotFound", err)
		}
		for _, lt := range []*storage.LoginTicket{waiting, approved} {
			for range 2 { // again: already retired is no error
				if err := s.RetireLoginTicket(ctx, lt.ID, lt.BrowserHash); err != nil {
					t.Fatalf("retire %s: %v", lt.ID, err)
				}
			}
			got, err := s.GetLoginTicket(ctx, lt.ID)
			if err != nil || got.State != storage.TicketConsumed {
				t.Fatalf("%s after retiring: %+v %v, want consumed", lt.ID, got, err)
			}
		}
		if _, err := s.ScanLoginTicket(ctx, waiting.ID, f.bob, f.at(0)); !errors.Is(err, storage.ErrConflict) {
			t.Errorf("scan of a retired ticket: %v, want ErrConflict", err)
		}
		if _, err := s.ConsumeLoginTicket(ctx, approved.ID, approved.BrowserHash, f.at(0)); !errors.Is(err, storage.ErrConflict) {
			t.Errorf("completing a retired approved ticket: %v, want ErrConflict", err)
		}
	})
}
