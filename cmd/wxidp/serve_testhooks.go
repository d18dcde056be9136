package main

import "github.com/wxidp/wxidp/storage"

// providerStore is the store the provider composes: store itself, or what a
// test's wrapStore makes of it. Only the provider sees the wrapper, so the
// rest of the wiring (optional capabilities such as storage.Resealer
// included) sees the real store.
func (cfg *serveConfig) providerStore(store storage.Store) storage.Store {
	if cfg.wrapStore == nil {
		return store
	}
	return cfg.wrapStore(store)
}
