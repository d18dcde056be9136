package storage

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors for wxidp's own records. Backends translate driver errors
// into these where they leave the backend.
var (
	ErrNotFound      = errors.New("storage: not found")
	ErrAlreadyExists = errors.New("storage: already exists")
	// ErrTxActive is returned by BeginTX when the context already carries a
	// transaction: nested transactions are not supported.
	ErrTxActive = errors.New("storage: a transaction is already active in this context")
	// ErrNoTx is returned by Commit and Rollback when the context carries no
	// transaction.
	ErrNoTx = errors.New("storage: no transaction in this context")
)

// Client is a registered OAuth2 client. Field names follow RFC 7591 where
// one exists.
type Client struct {
	ID string
	// SecretHash is the output of the provider's client-secret hasher; the
	// secret itself is never stored. Empty for public clients.
	SecretHash              []byte
	Name                    string
	GrantTypes              []string
	Scopes                  []string
	Audience                []string
	RedirectURIs            []string
	TokenEndpointAuthMethod string
	// WeChatAppID binds a public mini-program client to exactly one appid.
	WeChatAppID string
	// WeChatAppSecret is the app secret encrypted under WXIDP_SECRETS; nil
	// when none is registered.
	WeChatAppSecret []byte
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Public reports whether the client authenticates with no secret.
func (c *Client) Public() bool { return c.TokenEndpointAuthMethod == "none" }

// KeyState is where a signing key is in its life: next -> active -> retired.
type KeyState string

const (
	KeyNext    KeyState = "next"
	KeyActive  KeyState = "active"
	KeyRetired KeyState = "retired"
)

// SigningKey is a JWT signing key as stored: the private key is encrypted
// under WXIDP_SECRETS and only the keys package can read it.
type SigningKey struct {
	KID       string
	Algorithm string
	State     KeyState
	// PrivateKey is the AES-256-GCM ciphertext of the PKCS#8 DER key.
	PrivateKey []byte
	CreatedAt  time.Time
	// ActivatedAt and RetiredAt are zero until the key reaches that state.
	ActivatedAt time.Time
	RetiredAt   time.Time
}

// ClientStore manages client registrations (the admin API).
type ClientStore interface {
	// CreateClient stores c; ErrAlreadyExists if the ID is taken. CreatedAt
	// and UpdatedAt are set by the store when zero.
	CreateClient(ctx context.Context, c *Client) error
	// LookupClient returns the client or ErrNotFound.
	LookupClient(ctx context.Context, id string) (*Client, error)
	// ListClients returns every client ordered by ID.
	ListClients(ctx context.Context) ([]Client, error)
	// UpdateClient replaces every field but ID and CreatedAt; ErrNotFound if
	// absent. UpdatedAt is set by the store.
	UpdateClient(ctx context.Context, c *Client) error
	// DeleteClient removes the client and every token and code issued to it
	// (so a later client with the same ID never inherits them); ErrNotFound
	// if absent.
	DeleteClient(ctx context.Context, id string) error
}

// KeyStore keeps signing keys.
type KeyStore interface {
	// CreateSigningKey stores k. ErrAlreadyExists if the kid is taken, or if k
	// is active while another key is active: the store guarantees at most one
	// active key, which is how concurrent first starts create exactly one.
	// CreatedAt is set by the store when zero.
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// ListSigningKeys returns every key, newest CreatedAt first.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
}

// Store is everything a backend provides; the conformance suite runs against
// it. Code that needs less declares its own smaller interface.
type Store interface {
	FositeStore
	ClientStore
	KeyStore
	UserStore
	WeChatCodeStore
	WeChatTokenStore
	Maintenance
	// Ping checks the backend is reachable (readiness).
	Ping(ctx context.Context) error
}
