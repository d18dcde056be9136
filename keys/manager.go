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
	RotateSigningKeys(ctx context.Context, newNext *storage.SigningKey, notBefore, now time.Time) error
	DeleteRetiredSigningKeys(ctx context.Context, before time.Time) (int, error)
	RevokeSigningKey(ctx context.Context, kid string, newNext *storage.SigningKey, now time.Time) error
}

// ErrNoActiveKey means the store holds no active signing key.
var ErrNoActiveKey = errors.New("keys: no active signing key")

// RSABits is the size of generated signing keys.
const RSABits = 2048

// Options set the key lifecycle's timing; see docs/keys.md.
type Options struct {
	// JWKSMaxAge is how long verifiers may cache the JWKS (its
	// Cache-Control max-age). A next key is published at least this long,
	// plus ReloadEvery, before it signs anything.
	JWKSMaxAge time.Duration
	// ReloadEvery is how often every process rereads the keys; a rotation
	// made by one process reaches the others within it.
	ReloadEvery time.Duration
	// RotateEvery rotates automatically when the active key is this old;
	// 0 disables scheduled rotation.
	RotateEvery time.Duration
	// TokenLifetime is the longest lifetime of a token we sign (access or ID
	// token). A retired key stays published until every token it signed has
	// expired: TokenLifetime plus ReloadEvery plus ClockSkew.
	TokenLifetime time.Duration
	// ClockSkew absorbs clock differences between processes and verifiers
	// (default 1 minute).
	ClockSkew time.Duration
	Log       *slog.Logger
	Now       func() time.Time
	// OnScheduledRotation, when set, is called after a rotation this
	// process made on schedule (not one asked for through Rotate), with the
	// kid now active and the kid retired: the audit trail records it.
	OnScheduledRotation func(ctx context.Context, activeKID, retiredKID string)
}

// Manager keeps the signing keys in memory. Readers (every token request)
// load one atomic pointer; only Reload takes the lock.
type Manager struct {
	store  Store
	cipher *Cipher
	opts   Options

	mu     sync.Mutex         // serialises Reload
	parsed map[string]*loaded // decrypted keys by kid, so Reload decrypts each once
	set    atomic.Pointer[keySet]
	// dropped are keys build forgot whose signers are still open: the
	// snapshot in force may sign with them until the next one is stored.
	dropped []*loaded
	// verified is shared by every Signer of the manager (verified.go).
	verified verifiedCache
}

type loaded struct {
	rec  storage.SigningKey
	priv *rsa.PrivateKey
	sign RS256Signer // SignerName's signer, set up once per key
}

// keySet is an immutable snapshot of the keys in force.
type keySet struct {
	active *josev3.JSONWebKey
	verify map[string]*rsa.PublicKey // every published key
	jwks   []byte                    // next, active and published retired keys
	etag   string
	list   []storage.SigningKey
}

// NewManager returns a manager with no keys loaded: call Init.
func NewManager(store Store, cipher *Cipher, opts Options) *Manager {
	if opts.JWKSMaxAge <= 0 {
		opts.JWKSMaxAge = 10 * time.Minute
	}
	if opts.ReloadEvery <= 0 {
		opts.ReloadEvery = 10 * time.Second
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.ClockSkew <= 0 {
		opts.ClockSkew = time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Manager{store: store, cipher: cipher, opts: opts, parsed: map[string]*loaded{}}
}

// Init loads the keys, creating the first active key and the first next key
// when the store has none. Processes starting at once against one empty
// database race to insert them; the store admits one of each, and the
// losers load the winners'.
func (m *Manager) Init(ctx context.Context) error {
	err := m.Reload(ctx)
	if errors.Is(err, ErrNoActiveKey) {
		if err := m.create(ctx, storage.KeyActive); err != nil {
			return err
		}
		err = m.Reload(ctx)
	}
	if err != nil {
		return err
	}
	if !m.hasNext() {
		if err := m.create(ctx, storage.KeyNext); err != nil {
			return err
		}
		return m.Reload(ctx)
	}
	return nil
}

func (m *Manager) create(ctx context.Context, state storage.KeyState) error {
	rec, err := m.NewKey(state)
	if err != nil {
		return err
	}
	if err := m.store.CreateSigningKey(ctx, rec); err != nil && !errors.Is(err, storage.ErrAlreadyExists) {
		return fmt.Errorf("keys: store %s signing key: %w", state, err)
	}
	return nil
}

func (m *Manager) hasNext() bool {
	for _, k := range m.set.Load().list {
		if k.State == storage.KeyNext {
			return true
		}
	}
	return false
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
	sealed, err := m.cipher.Seal(der, storage.SealedSigningKey.AAD(kid))
	if err != nil {
		return nil, err
	}
	now := m.opts.Now().UTC()
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
	next, err := m.build(recs)
	if err != nil {
		return err
	}
	if next.active == nil {
		return ErrNoActiveKey
	}
	m.publish(next)
	return nil
}

// publish swaps in set and then closes the signers of keys it no longer
// holds (their C memory, in the OpenSSL build). A request that picked up
// the previous snapshot and signs only now fails with ErrSignerClosed: for
// a revoked key that is the point. The caller holds m.mu.
func (m *Manager) publish(set *keySet) {
	m.set.Store(set)
	for _, l := range m.dropped {
		l.sign.Close()
	}
	m.dropped = nil
}

// build makes a snapshot of recs, decrypting only keys not seen before and
// forgetting those no longer listed. The caller holds m.mu.
func (m *Manager) build(recs []storage.SigningKey) (*keySet, error) {
	next := &keySet{verify: map[string]*rsa.PublicKey{}, list: recs}
	seen := map[string]bool{}
	var published []jose.JSONWebKey
	retiredUntil := m.opts.Now().Add(-m.retention())
	for _, rec := range recs {
		if rec.State == storage.KeyRetired && rec.RetiredAt.Before(retiredUntil) {
			continue // every token it signed has expired
		}
		seen[rec.KID] = true
		l, err := m.load(rec)
		if err != nil {
			return nil, err
		}
		published = append(published, jose.JSONWebKey{Key: &l.priv.PublicKey, KeyID: rec.KID, Algorithm: rec.Algorithm, Use: "sig"})
		// The next key verifies too: right after another process rotates,
		// it signs with the key this process still knows as next (until its
		// next reload), and those tokens must work here at once. Trusting it
		// costs nothing: only we hold its private key.
		next.verify[rec.KID] = &l.priv.PublicKey
		if rec.State == storage.KeyActive {
			// fosite signs through go-jose, which takes the kid from this
			// JSONWebKey and the signature from the opaque signer.
			signer := &opaqueRS256{pub: &l.priv.PublicKey, s: l.sign}
			next.active = &josev3.JSONWebKey{Key: signer, KeyID: rec.KID, Algorithm: rec.Algorithm, Use: "sig"}
		}
	}
	for kid, l := range m.parsed {
		if !seen[kid] {
			delete(m.parsed, kid)
			m.dropped = append(m.dropped, l)
		}
	}
	// Deterministic order (kid) so the ETag changes only when the set does.
	sort.Slice(published, func(i, j int) bool { return published[i].KeyID < published[j].KeyID })
	var err error
	next.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: published})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(next.jwks)
	next.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	return next, nil
}

func (m *Manager) load(rec storage.SigningKey) (*loaded, error) {
	if l, ok := m.parsed[rec.KID]; ok {
		l.rec = rec
		return l, nil
	}
	der, err := m.cipher.Open(rec.PrivateKey, storage.SealedSigningKey.AAD(rec.KID))
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
	sign, err := newRS256(priv)
	if err != nil {
		return nil, fmt.Errorf("keys: signing key %s: %s signer: %w", rec.KID, SignerName, err)
	}
	l := &loaded{rec: rec, priv: priv, sign: sign}
	m.parsed[rec.KID] = l
	return l, nil
}

// JWKS returns the published key set as JSON, its ETag, and how long
// verifiers may cache it.
func (m *Manager) JWKS() (body []byte, etag string, maxAge time.Duration) {
	s := m.set.Load()
	return s.jwks, s.etag, m.opts.JWKSMaxAge
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

// thumbprint is the RFC 7638 SHA-256 thumbprint: a kid any party can
// recompute from the public key.
func thumbprint(pub *rsa.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}
