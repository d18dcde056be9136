package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wxidp/wxidp/keys"
)

// ceiling is how many RSA-2048 PKCS#1 v1.5 signatures per second one
// signer makes on every core: a token costs at least one, so no grant can
// go faster than this (two for a login with an ID token).
type ceiling struct {
	Signer    string  `json:"signer"`
	PerSecond float64 `json:"signatures_per_second"`
	Workers   int     `json:"goroutines"`
	Signed    int64   `json:"signatures"`
	Seconds   float64 `json:"seconds"`
}

// signerBuild names the signer a server built like this binary signs
// with, and its implementation.
func signerBuild() (name, version string) { return keys.SignerName, keys.SignerVersion() }

// measureSigners runs each signer keys.Signers offers for d on
// GOMAXPROCS goroutines sharing one signer, as the server shares its
// signer among requests, and returns the ceilings by name.
func measureSigners(ctx context.Context, d time.Duration) ([]ceiling, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	constructors := keys.Signers()
	names := make([]string, 0, len(constructors))
	for name := range constructors {
		names = append(names, name)
	}
	slices.Sort(names)
	// A JWS signing input of the size an access token has.
	input := make([]byte, 600)
	for i := range input {
		input[i] = 'a' + byte(i%26)
	}
	out := make([]ceiling, 0, len(names))
	for _, name := range names {
		s, err := constructors[name](key)
		if err != nil {
			return nil, fmt.Errorf("signer %s: %w", name, err)
		}
		c, err := measureOne(ctx, name, s, &key.PublicKey, input, d)
		s.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func measureOne(ctx context.Context, name string, s keys.RS256Signer, pub *rsa.PublicKey, input []byte, d time.Duration) (ceiling, error) {
	// A fast signer that signs wrongly would make a meaningless ceiling.
	sig, err := s.Sign(input)
	if err != nil {
		return ceiling{}, fmt.Errorf("signer %s: %w", name, err)
	}
	sum := sha256.Sum256(input)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return ceiling{}, fmt.Errorf("signer %s: its signature does not verify: %w", name, err)
	}
	workers := runtime.GOMAXPROCS(0)
	var (
		stop    atomic.Bool
		signed  atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		signErr error
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			var n int64
			for !stop.Load() {
				if _, err := s.Sign(input); err != nil {
					errOnce.Do(func() { signErr = err })
					stop.Store(true)
				}
				n++
			}
			signed.Add(n)
		})
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if signErr != nil {
		return ceiling{}, fmt.Errorf("signer %s: %w", name, signErr)
	}
	if err := ctx.Err(); err != nil {
		return ceiling{}, err
	}
	return ceiling{Signer: name, PerSecond: float64(signed.Load()) / elapsed, Workers: workers,
		Signed: signed.Load(), Seconds: elapsed}, nil
}

// fastest is S, the ceiling the targets are ratios of.
func fastest(cs []ceiling) (ceiling, bool) {
	var best ceiling
	for _, c := range cs {
		if c.PerSecond > best.PerSecond {
			best = c
		}
	}
	return best, best.PerSecond > 0
}
