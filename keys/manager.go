package keys

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/wxidp/wxidp/storage"
)

// Store is what the manager needs from storage.
type Store interface {
	CreateSigningKey(ctx context.Context, k *storage.SigningKey) error
	ListSigningKeys(ctx context.Context) ([]storage.SigningKey, error)
}

// ErrNoActiveKey means the store holds no active signing key.
var ErrNoActiveKey = errors.New("keys: no active signing key")

// RSABits is the size of generated signing keys.
const RSABits = 2048

// Manager keeps the signing keys in memory. Readers (every token request)
// load one atomic pointer; only Reload takes the lock.
type Manager struct {
	store  Store
	cipher *Cipher
	log    *slog.Logger

	mu     sync.Mutex         // serialises Reload
	parsed map[string]*loaded // decrypted keys by kid, so Reload decrypts each once
	set    atomic.Pointer[keySet]
}

type loaded struct {
	rec  storage.SigningKey
	priv *rsa.PrivateKey
}

// keySet is an immutable snapshot of the keys in force.
type keySet struct {
	active *josev3.JSONWebKey
	verify map[string]*rsa.PublicKey
	jwks   []byte
	etag   string
	list   []storage.SigningKey
}

// NewManager returns a manager with no keys loaded: call Init.
func NewManager(store Store, cipher *Cipher, log *slog.Logger) *Manager {
	return &Manager{store: store, cipher: cipher, log: log, parsed: map[string]*loaded{}}
}

// Init loads the keys, creating the first active key when the store has
// none. Processes starting at once against one empty database race to insert
// an active key; the store admits one, and the losers load the winner's.
func (m *Manager) Init(ctx context.Context) error {
	err := m.Reload(ctx)
	if !errors.Is(err, ErrNoActiveKey) {
		return err
	}
	rec, err := m.NewKey(storage.KeyActive)
	if err != nil {
		return err
	}
	if err := m.store.CreateSigningKey(ctx, rec); err != nil && !errors.Is(err, storage.ErrAlreadyExists) {
		return fmt.Errorf("keys: store first signing key: %w", err)
	}
	return m.Reload(ctx)
}

// NewKey generates an RSA key and seals it into a record in the given state.
func (m *Manager) NewKey(state storage.KeyState) (*storage.SigningKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, RSABits)
	if err != nil {
		return nil, err
	}
	kid, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	sealed, err := m.cipher.Seal(der, keyAAD(kid))
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	rec := &storage.SigningKey{KID: kid, Algorithm: string(jose.RS256), State: state, PrivateKey: sealed, CreatedAt: now}
	if state == storage.KeyActive {
		rec.ActivatedAt = now
	}
	return rec, nil
}

// Reload rereads the keys from the store and swaps in a new snapshot. A key
// that cannot be decrypted fails the reload (the previous snapshot stays), so
// a wrong WXIDP_SECRETS stops start-up instead of serving without keys.
func (m *Manager) Reload(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: list signing keys: %w", err)
	}
	next := &keySet{verify: map[string]*rsa.PublicKey{}, list: recs}
	seen := map[string]bool{}
	var published []jose.JSONWebKey
	for _, rec := range recs {
		seen[rec.KID] = true
		l, err := m.load(rec)
		if err != nil {
			return err
		}
		next.verify[rec.KID] = &l.priv.PublicKey
		published = append(published, jose.JSONWebKey{Key: &l.priv.PublicKey, KeyID: rec.KID, Algorithm: rec.Algorithm, Use: "sig"})
		if rec.State == storage.KeyActive {
			next.active = &josev3.JSONWebKey{Key: l.priv, KeyID: rec.KID, Algorithm: rec.Algorithm, Use: "sig"}
		}
	}
	if next.active == nil {
		return ErrNoActiveKey
	}
	for kid := range m.parsed {
		if !seen[kid] {
			delete(m.parsed, kid)
		}
	}
	// Deterministic order (kid) so the ETag changes only when the set does.
	sort.Slice(published, func(i, j int) bool { return published[i].KeyID < published[j].KeyID })
	next.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: published})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(next.jwks)
	next.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	m.set.Store(next)
	return nil
}

func (m *Manager) load(rec storage.SigningKey) (*loaded, error) {
	if l, ok := m.parsed[rec.KID]; ok {
		l.rec = rec
		return l, nil
	}
	der, err := m.cipher.Open(rec.PrivateKey, keyAAD(rec.KID))
	if err != nil {
		return nil, fmt.Errorf("keys: signing key %s: %w", rec.KID, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keys: signing key %s: parse: %w", rec.KID, err)
	}
	priv, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("keys: signing key %s: not an RSA key", rec.KID)
	}
	l := &loaded{rec: rec, priv: priv}
	m.parsed[rec.KID] = l
	return l, nil
}

// Run reloads the keys every interval until ctx ends, so a rotation made by
// another process reaches this one without a restart.
func (m *Manager) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Reload(ctx); err != nil && ctx.Err() == nil {
				m.log.Error("reload signing keys", "err", err)
			}
		}
	}
}

// JWKS returns the published key set as JSON and its ETag.
func (m *Manager) JWKS() (body []byte, etag string) {
	s := m.set.Load()
	return s.jwks, s.etag
}

// Keys returns the key records (without usable private keys) as last loaded.
func (m *Manager) Keys() []storage.SigningKey {
	s := m.set.Load()
	out := make([]storage.SigningKey, len(s.list))
	for i, k := range s.list {
		k.PrivateKey = nil
		out[i] = k
	}
	return out
}

func keyAAD(kid string) []byte { return []byte("wxidp/signing-key/" + kid) }

// thumbprint is the RFC 7638 SHA-256 thumbprint: a kid any party can
// recompute from the public key.
func thumbprint(pub *rsa.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}
