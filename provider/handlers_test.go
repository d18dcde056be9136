package provider

import (
	"context"
	"errors"
	"testing"

	"github.com/ory/fosite"
)

// grantSpy handles one grant type and counts what fosite asks of it.
type grantSpy struct {
	grant     string
	populated int
}

func (s *grantSpy) CanHandleTokenEndpointRequest(_ context.Context, ar fosite.AccessRequester) bool {
	return ar.GetGrantTypes().ExactOne(s.grant)
}

func (s *grantSpy) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return true }

func (s *grantSpy) HandleTokenEndpointRequest(ctx context.Context, ar fosite.AccessRequester) error {
	if !s.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	return nil
}

func (s *grantSpy) PopulateTokenEndpointResponse(_ context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	s.populated++
	if !ar.GetGrantTypes().ExactOne(s.grant) {
		return fosite.ErrUnknownRequest
	}
	resp.SetAccessToken("token-of-" + s.grant)
	resp.SetTokenType("bearer")
	return nil
}

// The handlers of other grants are not asked to populate a response (fosite
// asks every handler, and its own capture a stack trace to say no), and the
// handler of the request's grant answers as before.
func TestOwnGrantsOnly(t *testing.T) {
	mine, other := &grantSpy{grant: "mine"}, &grantSpy{grant: "other"}
	fc := &fosite.Config{TokenEndpointHandlers: fosite.TokenEndpointHandlers{other, mine}}
	oauth := &fosite.Fosite{Config: fc}
	ownGrantsOnly(fc)

	ar := fosite.NewAccessRequest(&fosite.DefaultSession{})
	ar.GrantTypes = fosite.Arguments{"mine"}
	resp, err := oauth.NewAccessResponse(context.Background(), ar)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAccessToken() != "token-of-mine" {
		t.Fatalf("access token %q, want the grant's own handler's", resp.GetAccessToken())
	}
	if mine.populated != 1 || other.populated != 0 {
		t.Fatalf("populated: the grant's handler %d times, the other grant's %d; want 1 and 0", mine.populated, other.populated)
	}

	ar.GrantTypes = fosite.Arguments{"nobody's"}
	if _, err := oauth.NewAccessResponse(context.Background(), ar); !errors.Is(err, fosite.ErrServerError) {
		t.Fatalf("a grant no handler takes: %v, want fosite's server error (NewAccessRequest turns it away first)", err)
	}
	if mine.populated != 1 || other.populated != 0 {
		t.Fatalf("a grant no handler takes reached a handler: %d, %d", mine.populated, other.populated)
	}
}
