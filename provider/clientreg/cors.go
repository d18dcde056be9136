package clientreg

import (
	"fmt"
	"net/url"
)

// maxCORSOrigins bounds allowed_cors_origins: a client is one application,
// served from a few origins at most.
const maxCORSOrigins = 32

// maxCORSOriginLen is a host name (253) with scheme and port to spare.
const maxCORSOriginLen = 300

// ValidateCORSOrigin accepts only an origin as browsers serialise it in the
// Origin header (RFC 6454 §6.2), since the CORS check compares the header
// with the registered origins by exact string equality: scheme://host[:port]
// with a lowercase scheme and host, no default port (browsers omit it), and
// no path, query, fragment or user-info. The hosts allowed are those of
// redirect URIs: https to any host, http only to a loopback address or
// localhost. Its errors wrap ErrInvalidMetadata and name the origin.
func ValidateCORSOrigin(raw string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: allowed_cors_origins: %q %s", ErrInvalidMetadata, raw, why)
	}
	if raw == "" {
		return bad("is empty")
	}
	if len(raw) > maxCORSOriginLen {
		return fmt.Errorf("%w: allowed_cors_origins: an origin is longer than %d characters", ErrInvalidMetadata, maxCORSOriginLen)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return bad("contains whitespace, control, non-ASCII or backslash characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("is not an origin")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return bad("must be https://host[:port], or http:// with a loopback address or localhost")
	}
	// Anything past the authority (even a lone "/") or before it
	// (user-info, an uppercase scheme) makes a string no browser sends.
	if raw != u.Scheme+"://"+u.Host || u.User != nil {
		return bad("must be exactly scheme://host[:port], lowercase, with no path, query, fragment or user-info")
	}
	if err := checkAuthority(raw, u, u.Scheme == "http", bad); err != nil {
		return err
	}
	if p := u.Port(); (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
		return bad("must not name the scheme's default port: browsers leave it out of the Origin header")
	}
	return nil
}

// checkCORSOrigins validates allowed_cors_origins.
func checkCORSOrigins(origins []string) error {
	if len(origins) > maxCORSOrigins {
		return fmt.Errorf("%w: allowed_cors_origins: more than %d origins", ErrInvalidMetadata, maxCORSOrigins)
	}
	for _, o := range origins {
		if err := ValidateCORSOrigin(o); err != nil {
			return err
		}
	}
	return nil
}
