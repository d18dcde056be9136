package provider

import (
	"errors"

	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

// ErrTemporarilyUnavailable is what every endpoint answers while storage
// cannot be reached: 503 temporarily_unavailable, which clients retry.
var ErrTemporarilyUnavailable = fosite.ErrTemporarilyUnavailable.WithHint(
	"The authorization server cannot reach its storage right now. Retry the request later.")

// outage rewrites err as ErrTemporarilyUnavailable when storage being
// unreachable is anywhere in its chain. fosite wraps every storage error
// in a verdict of its own: a failed GetClient becomes invalid_client, a
// failed token lookup an inactive token, a failed revocation lookup a 200.
// Each of those would make a client throw away valid credentials, or
// believe a token revoked that is not, over what is only an outage.
func outage(err error) error {
	if err == nil || !errors.Is(err, storage.ErrUnavailable) {
		return err
	}
	return ErrTemporarilyUnavailable.WithWrap(err)
}
