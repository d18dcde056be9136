package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// SealedHeaderLen is how many leading bytes of a sealed value name its
// format and the secret that sealed it. keys.Cipher defines its header as
// this many bytes (a version byte, then the secret's fingerprint), so the
// two cannot drift; migration 00005 writes the number out, and
// migrations' tests hold it to this constant.
const SealedHeaderLen = 5

// SealedKind is the kind of a sealed value.
type SealedKind string

// The kinds of sealed values; SealedSpecs says everything else about them.
const (
	SealedSigningKey  SealedKind = "signing_key"
	SealedAppSecret   SealedKind = "wechat_app_secret"
	SealedSessionKey  SealedKind = "wechat_session_key"
	SealedWeChatToken SealedKind = "wechat_access_token"
)

// SealedSpec is what the code around a kind of sealed value needs to know
// of it: where its values are stored and what each is bound to. Only the
// code that seals and opens a kind handles its plaintext; everything else
// (the PostgreSQL backend's re-encryption walk and header queries,
// keys.Reseal's associated data, error messages) is derived from
// SealedSpecs, so a new kind is one entry there plus the migration that
// adds its column and header index.
type SealedSpec struct {
	Kind SealedKind
	// Table and Column locate the values in the SQL schema; NULL is no
	// value. The header index on substring(Column from 1 for
	// SealedHeaderLen) is named <Table>_<Column>_header.
	Table, Column string
	// IDColumns are the text columns whose values make Sealed.ID, in that
	// order; the first KeyColumns of them are the table's primary key.
	// Columns past the key are part of what the value is bound to (a
	// client's appid), so a row where one changed no longer holds the
	// value that was read.
	IDColumns  []string
	KeyColumns int
	// The associated data is aadPrefix followed by the ID parts at
	// aadParts, joined by "/": it binds a value to its place, so a value
	// copied onto another row does not open.
	aadPrefix string
	aadParts  []int
	// personal lists the ID parts that are personal data (an openid):
	// error messages show only a hash of them.
	personal []int
}

// SealedSpecs lists every kind of sealed value, in the order re-encryption
// walks them. The associated data formats are fixed forever: values sealed
// under them are stored.
func SealedSpecs() []SealedSpec {
	return []SealedSpec{{
		Kind: SealedSigningKey, Table: "signing_keys", Column: "private_key",
		IDColumns: []string{"kid"}, KeyColumns: 1,
		aadPrefix: "wxidp/signing-key/", aadParts: []int{0},
	}, {
		Kind: SealedAppSecret, Table: "clients", Column: "wechat_app_secret",
		IDColumns: []string{"id", "wechat_appid"}, KeyColumns: 1,
		aadPrefix: "wxidp/wechat-app-secret/", aadParts: []int{1},
	}, {
		Kind: SealedSessionKey, Table: "wechat_identities", Column: "session_key",
		IDColumns: []string{"app_id", "open_id"}, KeyColumns: 2,
		aadPrefix: "wxidp/wechat-session-key/", aadParts: []int{0, 1}, personal: []int{1},
	}, {
		Kind: SealedWeChatToken, Table: "wechat_tokens", Column: "token",
		IDColumns: []string{"app_id"}, KeyColumns: 1,
		aadPrefix: "wxidp/wechat-access-token/", aadParts: []int{0},
	}}
}

// spec returns the entry of kind k.
func (k SealedKind) spec() (SealedSpec, bool) {
	for _, s := range SealedSpecs() {
		if s.Kind == k {
			return s, true
		}
	}
	return SealedSpec{}, false
}

// AAD returns the associated data a value of kind k is sealed with, given
// the ID parts it binds, in this order: a signing key's kid; a WeChat app
// secret's appid; a session key's appid and openid; a WeChat access
// token's appid. Every place that seals or opens a value calls it. A wrong
// number of parts, or an unknown kind, is a programming error that would
// bind values to the wrong place, so it panics (any test sealing one value
// of the kind finds it).
func (k SealedKind) AAD(bound ...string) []byte {
	s, ok := k.spec()
	if !ok || len(bound) != len(s.aadParts) {
		panic(fmt.Sprintf("storage: AAD of sealed kind %q takes %d ID parts, got %d", k, len(s.aadParts), len(bound)))
	}
	return []byte(s.aadPrefix + strings.Join(bound, "/"))
}

// Sealed is one stored value sealed under WXIDP_SECRETS, as re-encryption
// sees it: Kind and ID identify it (ID holds the values of its
// SealedSpec's IDColumns).
type Sealed struct {
	Kind  SealedKind
	ID    []string
	Value []byte
}

// AAD returns the associated data v was sealed with; an error for an
// unknown kind or an ID of the wrong shape (which no backend produces).
func (v Sealed) AAD() ([]byte, error) {
	s, ok := v.Kind.spec()
	if !ok || len(v.ID) != len(s.IDColumns) {
		return nil, fmt.Errorf("storage: unknown sealed value %s with %d id parts", v.Kind, len(v.ID))
	}
	bound := make([]string, len(s.aadParts))
	for i, p := range s.aadParts {
		bound[i] = v.ID[p]
	}
	return v.Kind.AAD(bound...), nil
}

// Name names v for an error message, never its content: its kind and ID,
// with personal data (an openid) shown only as a short hash.
func (v Sealed) Name() string {
	s, ok := v.Kind.spec()
	if !ok || len(v.ID) != len(s.IDColumns) {
		return fmt.Sprintf("%s %d id parts", v.Kind, len(v.ID))
	}
	parts := []string{string(v.Kind)}
	for i, col := range s.IDColumns {
		if slices.Contains(s.personal, i) {
			sum := sha256.Sum256([]byte(v.ID[i]))
			parts = append(parts, col+"#"+hex.EncodeToString(sum[:4]))
		} else {
			parts = append(parts, col+"="+v.ID[i])
		}
	}
	return strings.Join(parts, " ")
}

// Resealer rewrites sealed values after WXIDP_SECRETS changes. It is an
// optional capability of a Store: a store that starts empty in every
// process (storage/memory) holds nothing sealed under an older secret, and
// callers use it only when the store implements it.
type Resealer interface {
	// ResealAll walks every sealed value (all kinds) in bounded batches and,
	// for each, stores reseal's result if it differs from the value; a
	// value changed concurrently since it was read is left alone (it was
	// sealed by a current process anyway). The first error stops the walk
	// and is returned. It returns how many values were rewritten.
	ResealAll(ctx context.Context, reseal func(Sealed) ([]byte, error)) (int, error)
	// SealedHeaders returns, per kind, the distinct first SealedHeaderLen
	// bytes of the stored sealed values (format version and the fingerprint
	// of the secret that sealed them), so start-up can refuse a
	// WXIDP_SECRETS that lacks a secret still in use. It must stay cheap on
	// millions of rows: an index walk, never a full scan.
	SealedHeaders(ctx context.Context) (map[SealedKind][][]byte, error)
}
