package clientreg

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/wxidp/wxidp/storage"
)

// Store is what client registration needs from storage.
type Store interface {
	CreateClient(ctx context.Context, c *storage.Client) error
	LookupClient(ctx context.Context, id string) (*storage.Client, error)
	ListClients(ctx context.Context) ([]storage.Client, error)
	UpdateClient(ctx context.Context, c *storage.Client, ifUpdatedAt time.Time) error
	DeleteClient(ctx context.Context, id string) error
}

// Sealer encrypts secrets at rest (keys.Cipher).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
}

// Registry registers and manages clients: the rules behind the admin API.
type Registry struct {
	store  Store
	hasher *SecretHasher
	sealer Sealer
	limits Lifetimes
}

// NewRegistry returns the client registry.
func NewRegistry(store Store, hasher *SecretHasher, sealer Sealer) *Registry {
	return &Registry{store: store, hasher: hasher, sealer: sealer}
}

// LimitLifetimes makes the server's lifetimes the upper bound of every
// client's own, and returns cs.
func (cs *Registry) LimitLifetimes(l Lifetimes) *Registry {
	cs.limits = l
	return cs
}

// Create registers a client and returns it with its secret in clear, the
// only time the secret is ever shown.
func (cs *Registry) Create(ctx context.Context, md Metadata) (*storage.Client, string, error) {
	if md.ClientID == "" {
		md.ClientID = uuid.NewString()
	}
	secret := md.ClientSecret
	if secret == "" && md.TokenEndpointAuthMethod != "none" {
		var err error
		if secret, err = GenerateSecret(); err != nil {
			return nil, "", err
		}
		md.ClientSecret = secret
	}
	c, err := cs.build(ctx, md, nil)
	if err != nil {
		return nil, "", err
	}
	if err := cs.store.CreateClient(ctx, c); err != nil {
		return nil, "", err
	}
	return c, secret, nil
}

// Update replaces a client's metadata. The secret and the WeChat app secret
// are kept unless new ones are given. A non-zero ifUpdatedAt is the
// UpdatedAt the caller read: if the client changed since, storage.ErrStale
// and nothing changes.
func (cs *Registry) Update(ctx context.Context, id string, md Metadata, ifUpdatedAt time.Time) (*storage.Client, error) {
	if md.ClientID != "" && md.ClientID != id {
		return nil, fmt.Errorf("%w: client_id cannot be changed", ErrInvalidMetadata)
	}
	md.ClientID = id
	old, err := cs.store.LookupClient(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := cs.build(ctx, md, old)
	if err != nil {
		return nil, err
	}
	if err := cs.store.UpdateClient(ctx, c, ifUpdatedAt); err != nil {
		return nil, err
	}
	return cs.store.LookupClient(ctx, id)
}

// Get, List and Delete pass through to the store.
func (cs *Registry) Get(ctx context.Context, id string) (*storage.Client, error) {
	return cs.store.LookupClient(ctx, id)
}

// List returns every client.
func (cs *Registry) List(ctx context.Context) ([]storage.Client, error) {
	return cs.store.ListClients(ctx)
}

// Delete removes a client and, through the store, its tokens.
func (cs *Registry) Delete(ctx context.Context, id string) error {
	return cs.store.DeleteClient(ctx, id)
}
