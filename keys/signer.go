package keys

import (
	"context"
	"errors"
	"fmt"

	josev3 "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite/token/jwt"
)

// Signer is the fosite jwt.Signer wxidp uses for access and ID tokens. It
// signs with the active key and, unlike fosite's DefaultSigner (which only
// knows the current key, fosite#786), verifies by the token's kid against
// every published key. The signature itself comes from the key's
// RS256Signer (SignerName's: crypto/rsa or OpenSSL), set up when the key
// was loaded.
type Signer struct {
	jwt.DefaultSigner
	m *Manager
}

var _ jwt.Signer = (*Signer)(nil)

// Signer returns the manager's signer.
func (m *Manager) Signer() *Signer {
	s := &Signer{m: m}
	s.GetPrivateKey = func(context.Context) (interface{}, error) {
		set := m.set.Load()
		// No active key: before Init, or after a revocation of the active
		// key whose reload failed (see Revoke).
		if set == nil || set.active == nil {
			return nil, ErrNoActiveKey
		}
		return set.active, nil
	}
	return s
}

// Decode parses and verifies token with the published key its kid names.
// A token verified before under the current key set is not verified again
// (verifiedCache).
func (s *Signer) Decode(_ context.Context, token string) (*jwt.Token, error) {
	set := s.m.set.Load()
	if t, ok := s.m.verified.get(set, token); ok {
		return t, nil
	}
	t, err := jwt.ParseWithClaims(token, jwt.MapClaims{}, s.keyFor)
	if err == nil {
		// keyFor read the set again: the same one, or a newer one, under
		// which this entry will not count.
		s.m.verified.put(set, token, t)
	}
	return t, err
}

// Validate verifies token and returns its signature.
func (s *Signer) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return s.GetSignature(ctx, token)
}

func (s *Signer) keyFor(t *jwt.Token) (interface{}, error) {
	// Refuse any algorithm but the one we sign with: the header is the
	// attacker's to choose.
	if t.Method != josev3.RS256 {
		return nil, fmt.Errorf("keys: unexpected signing algorithm %q", t.Method)
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errors.New("keys: token has no kid")
	}
	set := s.m.set.Load()
	if set == nil {
		return nil, ErrNoActiveKey
	}
	pub, ok := set.verify[kid]
	if !ok {
		return nil, fmt.Errorf("keys: unknown kid %q", kid)
	}
	return pub, nil
}
