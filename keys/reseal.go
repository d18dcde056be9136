package keys

import (
	"context"
	"fmt"

	"github.com/wxidp/wxidp/storage"
)

// Reseal re-encrypts every stored secret (every kind in
// storage.SealedSpecs) under the first of WXIDP_SECRETS, so that the older
// secrets can then be dropped. Values already sealed under the first secret
// are left alone, so it is cheap to repeat and safe to run from several
// processes at once. It stops at the first value no configured secret
// opens, naming it (never its content).
func Reseal(ctx context.Context, store storage.Resealer, c *Cipher) (int, error) {
	return store.ResealAll(ctx, func(s storage.Sealed) ([]byte, error) {
		if c.Current(s.Value) {
			return s.Value, nil
		}
		aad, err := s.AAD()
		if err != nil {
			return nil, err
		}
		plain, err := c.Open(s.Value, aad)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name(), err)
		}
		return c.Seal(plain, aad)
	})
}
