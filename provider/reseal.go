package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
)

// Reseal re-encrypts every stored secret (signing keys, WeChat app secrets,
// session keys, WeChat access tokens) under the first of WXIDP_SECRETS, so
// that the older secrets can then be dropped. Values already sealed under
// the first secret are left alone, so it is cheap to repeat and safe to run
// from several processes at once. It stops at the first value no configured
// secret opens, naming it (never its content).
func Reseal(ctx context.Context, store storage.Resealer, c *keys.Cipher) (int, error) {
	return store.ResealAll(ctx, func(s storage.Sealed) ([]byte, error) {
		if c.Current(s.Value) {
			return s.Value, nil
		}
		aad, err := sealedAAD(s)
		if err != nil {
			return nil, err
		}
		plain, err := c.Open(s.Value, aad)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", s.Kind, describe(s), err)
		}
		return c.Seal(plain, aad)
	})
}

// sealedAAD is the associated data each kind of value was sealed with.
func sealedAAD(s storage.Sealed) ([]byte, error) {
	need := map[storage.SealedKind]int{
		storage.SealedSigningKey: 1, storage.SealedAppSecret: 2, storage.SealedSessionKey: 2, storage.SealedWeChatToken: 1,
	}
	if n, ok := need[s.Kind]; !ok || len(s.ID) != n {
		return nil, fmt.Errorf("provider: unknown sealed value %s with %d id parts", s.Kind, len(s.ID))
	}
	switch s.Kind {
	case storage.SealedSigningKey:
		return keys.SigningKeyAAD(s.ID[0]), nil
	case storage.SealedAppSecret:
		return AppSecretAAD(s.ID[1]), nil
	case storage.SealedSessionKey:
		return SessionKeyAAD(s.ID[0], s.ID[1]), nil
	default:
		return wechatTokenAAD(s.ID[0]), nil
	}
}

// describe names a value for an error message; an openid is personal data,
// so only a hash of it is shown.
func describe(s storage.Sealed) string {
	if s.Kind == storage.SealedSessionKey && len(s.ID) == 2 {
		sum := sha256.Sum256([]byte(s.ID[1]))
		return "appid=" + s.ID[0] + " openid#" + hex.EncodeToString(sum[:4])
	}
	return fmt.Sprint(s.ID)
}
