package keys

import (
	"time"

	"github.com/wxidp/wxidp/storage"
)

// KeyAge reports how long the key in state (active or next; there is one of
// each) has been in that state, as last loaded: an active key's age counts
// from its activation, which is what scheduled rotation compares with
// RotateEvery. ok is false when no such key is loaded.
func (m *Manager) KeyAge(state storage.KeyState) (age time.Duration, ok bool) {
	s := m.set.Load()
	if s == nil {
		return 0, false
	}
	for _, k := range s.list {
		if k.State != state {
			continue
		}
		since := k.CreatedAt
		if state == storage.KeyActive && !k.ActivatedAt.IsZero() {
			since = k.ActivatedAt
		}
		return m.opts.Now().Sub(since), true
	}
	return 0, false
}
