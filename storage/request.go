package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
)

// RequestRecord is a fosite request flattened into storable fields. Both
// backends store exactly this, so a request survives the round trip the same
// way whichever backend holds it.
type RequestRecord struct {
	Signature         string
	RequestID         string
	RequestedAt       time.Time
	ClientID          string
	RequestedScopes   []string
	GrantedScopes     []string
	RequestedAudience []string
	GrantedAudience   []string
	// Form is the url-encoded form fosite handed over (already sanitized by
	// fosite's handlers).
	Form string
	// Session is the session as JSON.
	Session []byte
	Subject string
	// ExpiresAt is when the token of this kind expires; zero when the session
	// sets no expiry. The janitor deletes by it.
	ExpiresAt time.Time
}

// NewRequestRecord flattens r, stored under key (a token signature or a
// hashed code), with the expiry of the given token type.
func NewRequestRecord(key string, r fosite.Requester, kind fosite.TokenType) (RequestRecord, error) {
	rec := RequestRecord{
		Signature:         key,
		RequestID:         r.GetID(),
		RequestedAt:       r.GetRequestedAt().UTC().Truncate(time.Microsecond),
		RequestedScopes:   nonNil(r.GetRequestedScopes()),
		GrantedScopes:     nonNil(r.GetGrantedScopes()),
		RequestedAudience: nonNil(r.GetRequestedAudience()),
		GrantedAudience:   nonNil(r.GetGrantedAudience()),
		Form:              r.GetRequestForm().Encode(),
	}
	if c := r.GetClient(); c != nil {
		rec.ClientID = c.GetID()
	}
	if s := r.GetSession(); s != nil {
		b, err := json.Marshal(s)
		if err != nil {
			return RequestRecord{}, fmt.Errorf("storage: encode session: %w", err)
		}
		rec.Session = b
		rec.Subject = s.GetSubject()
		if exp := s.GetExpiresAt(kind); !exp.IsZero() {
			rec.ExpiresAt = exp.UTC().Truncate(time.Microsecond)
		}
	}
	return rec, nil
}

// Requester rebuilds the request, loading its client through clients and
// decoding the session into session (skipped when session is nil).
func (rec *RequestRecord) Requester(ctx context.Context, clients fosite.ClientManager, session fosite.Session) (*fosite.Request, error) {
	client, err := clients.GetClient(ctx, rec.ClientID)
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(rec.Form)
	if err != nil {
		return nil, fmt.Errorf("storage: decode form: %w", err)
	}
	if session != nil && len(rec.Session) > 0 {
		if err := json.Unmarshal(rec.Session, session); err != nil {
			return nil, fmt.Errorf("storage: decode session: %w", err)
		}
	}
	return &fosite.Request{
		ID:                rec.RequestID,
		RequestedAt:       rec.RequestedAt,
		Client:            client,
		RequestedScope:    fosite.Arguments(rec.RequestedScopes),
		GrantedScope:      fosite.Arguments(rec.GrantedScopes),
		RequestedAudience: fosite.Arguments(rec.RequestedAudience),
		GrantedAudience:   fosite.Arguments(rec.GrantedAudience),
		Form:              form,
		Session:           session,
	}, nil
}

// HashKey derives the storage key for secrets fosite hands over raw (the
// authorization code of OpenID Connect sessions), so a database dump does not
// hold usable codes.
func HashKey(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return append([]string{}, s...)
}
