package scan

import (
	"crypto/rand"
	"encoding/base64"
	"regexp"
)

// NewTicketID returns a fresh ticket: 24 random bytes in base64url, 32
// characters, the most WeChat's scene parameter holds (192 bits, so the
// ticket on someone's screen cannot be guessed from another).
func NewTicketID() string { return random(24) }

// NewSecret returns a fresh browser secret (256 bits) for a cookie.
func NewSecret() string { return random(32) }

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

var ticketPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{32}$`)

// ValidTicketID reports whether s has a ticket's shape; anything else is
// refused before storage is asked.
func ValidTicketID(s string) bool { return ticketPattern.MatchString(s) }

var secretPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// ValidSecret reports whether s has a browser secret's shape.
func ValidSecret(s string) bool { return secretPattern.MatchString(s) }
