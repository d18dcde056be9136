package keys

import (
	"maps"
	"sync"

	"github.com/ory/fosite/token/jwt"
)

// verifiedMax bounds the tokens remembered; when full, the cache starts
// over (a few kB per token: at most some MB).
const verifiedMax = 4096

// verifiedCache remembers tokens whose signature was verified, under the
// key set that verified them. Resource servers introspect the same token
// again and again, and the RSA verification and the claims' JSON decoding
// were a third of the server's CPU per introspection. An entry only counts
// while the set that verified it is the current one: any reload (a key
// revoked, rotated or retired) starts over, so a revoked key's tokens fail
// at once. The claims' time limits are checked again on every use.
type verifiedCache struct {
	mu     sync.Mutex
	set    *keySet
	tokens map[string]*jwt.Token
}

// get returns a copy of the verified token, if set verified it and its
// claims are still valid now.
func (c *verifiedCache) get(set *keySet, token string) (*jwt.Token, bool) {
	c.mu.Lock()
	t, ok := c.tokens[token]
	ok = ok && c.set == set
	c.mu.Unlock()
	if !ok || t.Claims.Valid() != nil {
		return nil, false // an expired token takes the full path, for its exact error
	}
	return clone(t), true
}

// put remembers a token that set verified.
func (c *verifiedCache) put(set *keySet, token string, t *jwt.Token) {
	if set == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set != set || len(c.tokens) >= verifiedMax {
		c.set, c.tokens = set, make(map[string]*jwt.Token)
	}
	c.tokens[token] = clone(t)
}

// clone copies what a caller could change: fosite treats the claims as its
// own.
func clone(t *jwt.Token) *jwt.Token {
	cp := *t
	cp.Header = maps.Clone(t.Header)
	cp.Claims = maps.Clone(t.Claims)
	return &cp
}
