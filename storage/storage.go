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
	// ErrNotReady is returned by RotateSigningKeys when the next key is
	// missing or has not been published long enough.
	ErrNotReady = errors.New("storage: next signing key not ready")
	// ErrUnavailable means the backend could not be reached or did not
	// answer within its deadline: the operation may or may not have taken
	// effect, and the caller should answer "retry later" (503), never a
	// verdict on the credentials it was checking.
	ErrUnavailable = errors.New("storage: temporarily unavailable")
	// ErrStale is returned by a conditional write whose record changed
	// since the caller read it: nothing was written, and the caller should
	// read the record again rather than overwrite someone else's change.
	ErrStale = errors.New("storage: changed since it was read")
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
	AllowedCORSOrigins      []string // browser origins that may read this client's token, revocation and userinfo answers
	PostLogoutRedirectURIs  []string // where RP-initiated logout may send the browser back, matched exactly like RedirectURIs
	TokenEndpointAuthMethod string
	// WeChatAppID binds a public mini-program client to exactly one appid.
	WeChatAppID string
	// WeChatLoginPage is the mini-program page a scan-to-login QR code
	// opens (e.g. "pages/scan/index"); empty means the app's home page.
	WeChatLoginPage string
	// WeChatAppSecret is the app secret encrypted under WXIDP_SECRETS; nil
	// when none is registered.
	WeChatAppSecret []byte
	// The client's own token lifetimes, whole seconds, each at most the
	// server's; zero uses the server's. RefreshTokenTTL is the idle
	// lifetime of each refresh token, SessionMaxAge the absolute lifetime
	// of a login's chain.
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	SessionMaxAge   time.Duration
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
	// absent. UpdatedAt is set by the store. When ifUpdatedAt is not zero the
	// update applies only if the stored UpdatedAt still equals it, checked
	// and written atomically; otherwise ErrStale and nothing changes. This is
	// what keeps a read-modify-write from reverting a concurrent change.
	UpdateClient(ctx context.Context, c *Client, ifUpdatedAt time.Time) error
	// DeleteClient removes the client and every token and code issued to it
	// (so a later client with the same ID never inherits them); ErrNotFound
	// if absent.
	DeleteClient(ctx context.Context, id string) error
	// CORSOriginAllowed reports whether origin is among the
	// AllowedCORSOrigins of client clientID or, when clientID is empty, of
	// any client (a CORS preflight names no client). It is an exact, indexed
	// match: it runs on unauthenticated requests.
	CORSOriginAllowed(ctx context.Context, origin, clientID string) (bool, error)
}

// KeyStore keeps signing keys.
type KeyStore interface {
	// CreateSigningKey stores k. ErrAlreadyExists if the kid is taken, or if k
	// is active (or next) while another key is: the store guarantees at most
	// one active and one next key, which is how concurrent first starts
	// create exactly one of each.
	// CreatedAt is set by the store when zero.
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// ListSigningKeys returns every key, newest CreatedAt first.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// RotateSigningKeys, atomically and as one conditional change: the
	// current next key becomes active (ActivatedAt = now), the active key
	// becomes retired (RetiredAt = now), and newNext is inserted as next.
	// It fails with ErrNotReady, changing nothing, when there is no next key
	// or the next key was created after notBefore (it must have been
	// published for a JWKS cache lifetime before it signs). Of concurrent
	// rotations exactly one succeeds; the others get ErrNotReady (the next
	// key they saw is gone or new).
	RotateSigningKeys(ctx context.Context, newNext *SigningKey, notBefore, now time.Time) error
	// RevokeSigningKey deletes the key kid at once, for a leaked key: no
	// publication wait, since verifiers must stop trusting it rather than
	// learn a new key. Atomically, and excluding concurrent rotations and
	// revocations as RotateSigningKeys does: if kid was active, the next
	// key becomes active (ActivatedAt = now) and newNext is inserted as
	// next, or, when there is no next key, newNext is inserted as active
	// (ActivatedAt = now), so an active key always remains; if kid was
	// next, newNext is inserted as next; if it was retired, newNext is not
	// used. On success newNext, if stored, is updated to what was stored
	// (State, CreatedAt set if zero, ActivatedAt). ErrNotFound, changing
	// nothing, for an unknown kid; ErrAlreadyExists, changing nothing, if
	// newNext is to be stored and its kid is taken.
	RevokeSigningKey(ctx context.Context, kid string, newNext *SigningKey, now time.Time) error
	// DeleteRetiredSigningKeys deletes retired keys with RetiredAt before
	// `before` (every token they signed has expired) and returns how many.
	DeleteRetiredSigningKeys(ctx context.Context, before time.Time) (int, error)
}

// Store is everything a backend provides; the conformance suite runs against
// it. Code that needs less declares its own smaller interface. Resealer
// (sealed.go) is an optional capability beside it.
type Store interface {
	FositeStore
	ClientStore
	KeyStore
	UserStore
	PeopleStore
	WeChatCodeStore
	WeChatTokenStore
	Maintenance
	AuditStore
	LoginStore
	// Ping checks the backend is reachable (readiness).
	Ping(ctx context.Context) error
}
