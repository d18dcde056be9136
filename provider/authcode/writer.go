package authcode

import (
	"context"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	fstorage "github.com/ory/fosite/storage"
)

// pending is a code exchange Handler signed and answered but has not
// written: the code's invalidation and the new tokens. record is nil when
// there is none (not yet, or written).
type pending struct {
	code, access, refresh string // signatures; refresh is empty when none was issued
	record                fosite.Requester
}

type pendingKey struct{}

// Defer returns ctx in which a code exchange is written by the Writer
// rather than by Handler. fosite populates the token response handler by
// handler, and the OpenID Connect handler, which reads the code's OIDC
// session and signs the ID token, comes after Handler. Were the exchange
// written by Handler, a database failing in between would answer 503 with
// the code used and its tokens stored, and the client's retry would be
// taken for a replay, which revokes them: the login would be lost. Written
// last, an exchange that answers 503 has used nothing up.
func Defer(ctx context.Context) context.Context {
	return context.WithValue(ctx, pendingKey{}, &pending{})
}

// Unwritten reports whether ctx, from Defer, holds an exchange that was
// answered but not written: no Writer was composed after Handler.
func Unwritten(ctx context.Context) bool {
	p, ok := ctx.Value(pendingKey{}).(*pending)
	return ok && p.record != nil
}

// Exchanger is the fast path of a code exchange, for a store that has one
// (postgres.Store): the code's invalidation and the new tokens are one
// statement, shared with concurrent exchanges' in one commit, instead of a
// transaction of their own (see storage/postgres/fastcode.go). written is
// false, with no error, when it wrote nothing for a reason other than a
// refusal; its refusals are InvalidateAuthorizeCodeSession's.
type Exchanger interface {
	ExchangeAndIssue(ctx context.Context, codeSignature string, issue func(context.Context) error) (written bool, _ error)
}

// Writer writes the exchange Handler deferred: in one statement through the
// Exchanger when the store is one and it wrote, else in a transaction as
// fosite's handler does. Compose it after the OpenID Connect and PKCE
// handlers.
type Writer struct {
	core oauth2.CoreStorage
	fast Exchanger // nil: the transaction only
}

// WriterFactory returns the compose.Factory of the Writer. store is the
// store itself: the one fosite is composed with may wrap it.
func WriterFactory(store any) compose.Factory {
	fast, _ := store.(Exchanger)
	return func(_ fosite.Configurator, st interface{}, _ interface{}) interface{} {
		return &Writer{core: st.(oauth2.CoreStorage), fast: fast}
	}
}

func (w *Writer) CanHandleTokenEndpointRequest(_ context.Context, ar fosite.AccessRequester) bool {
	return ar.GetGrantTypes().ExactOne("authorization_code")
}

func (w *Writer) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// HandleTokenEndpointRequest leaves the request to the other handlers.
func (w *Writer) HandleTokenEndpointRequest(context.Context, fosite.AccessRequester) error {
	return fosite.ErrUnknownRequest
}

// PopulateTokenEndpointResponse writes the deferred exchange, if any. Its
// errors are Handler's: a refusal (a used code, a disabled user) or an
// unavailable database wrapped in a server error, which the provider
// refines.
func (w *Writer) PopulateTokenEndpointResponse(ctx context.Context, _ fosite.AccessRequester, _ fosite.AccessResponder) (err error) {
	p, ok := ctx.Value(pendingKey{}).(*pending)
	if !ok || p.record == nil {
		return fosite.ErrUnknownRequest
	}
	record := p.record
	p.record = nil
	write := issue(w.core, p.access, p.refresh, record)
	if w.fast != nil {
		written, err := w.fast.ExchangeAndIssue(ctx, p.code, write)
		if err != nil {
			return serverError(err)
		}
		if written {
			return nil
		}
	}
	// fosite's transactional write (v0.49.0), of the tokens already signed,
	// after its second read of the code: a code whose earlier exchange is
	// being settled answers 503 there, not the replay that the
	// invalidation would report.
	if _, err := w.core.GetAuthorizeCodeSession(ctx, p.code, record.GetSession().Clone()); err != nil {
		return serverError(err)
	}
	ctx, err = fstorage.MaybeBeginTx(ctx, w.core)
	if err != nil {
		return serverError(err)
	}
	defer func() {
		if err != nil {
			if rerr := fstorage.MaybeRollbackTx(ctx, w.core); rerr != nil {
				err = fosite.ErrServerError.WithWrap(err).WithDebugf("error: %s; rollback error: %s", err, rerr)
			}
		}
	}()
	if err = w.core.InvalidateAuthorizeCodeSession(ctx, p.code); err != nil {
		return serverError(err)
	}
	if err = write(ctx); err != nil {
		return serverError(err)
	}
	if err = fstorage.MaybeCommitTx(ctx, w.core); err != nil {
		return serverError(err)
	}
	return nil
}

// issue stores an exchange's tokens: the access token, and the refresh
// token when one was issued.
func issue(core oauth2.CoreStorage, accessSig, refreshSig string, record fosite.Requester) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := core.CreateAccessTokenSession(ctx, accessSig, record); err != nil {
			return err
		}
		if refreshSig == "" {
			return nil
		}
		return core.CreateRefreshTokenSession(ctx, refreshSig, accessSig, record)
	}
}
