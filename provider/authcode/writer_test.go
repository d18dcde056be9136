package authcode

import (
	"context"
	"errors"
	"testing"

	"github.com/ory/fosite"
)

// The Writer writes only what Handler deferred, once; an exchange Handler
// answered that no Writer wrote is told apart (the provider answers it
// with a server error rather than tokens that were never stored).
func TestDeferredWrite(t *testing.T) {
	ctx := Defer(context.Background())
	if Unwritten(ctx) || Unwritten(context.Background()) {
		t.Fatal("nothing deferred yet, Unwritten says otherwise")
	}
	w := &Writer{}
	ar := fosite.NewAccessRequest(&fosite.DefaultSession{})
	ar.GrantTypes = fosite.Arguments{"authorization_code"}
	if err := w.PopulateTokenEndpointResponse(ctx, ar, fosite.NewAccessResponse()); !errors.Is(err, fosite.ErrUnknownRequest) {
		t.Fatalf("Writer with nothing deferred: %v, want ErrUnknownRequest", err)
	}
	*ctx.Value(pendingKey{}).(*pending) = pending{code: "c", access: "a", record: fosite.NewRequest()}
	if !Unwritten(ctx) {
		t.Fatal("an answered exchange no Writer wrote is not Unwritten")
	}
	if err := w.HandleTokenEndpointRequest(ctx, ar); !errors.Is(err, fosite.ErrUnknownRequest) {
		t.Fatalf("Writer's HandleTokenEndpointRequest: %v, want ErrUnknownRequest (it checks nothing)", err)
	}
}
