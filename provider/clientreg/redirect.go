package clientreg

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// ErrInvalidRedirectURI wraps every rejection of a redirect URI (RFC 7591
// §3.2.2 invalid_redirect_uri); its message names the URI and the rule.
var ErrInvalidRedirectURI = errors.New("invalid redirect uri")

// maxRedirectURILen bounds what the authorization endpoint will compare.
const maxRedirectURILen = 2048

var (
	// dnsNamePattern is a lowercase host name: LDH labels, no trailing dot.
	dnsNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	// privateSchemePattern is a reverse-DNS scheme (RFC 8252 §7.1), e.g.
	// com.example.app: at least two labels, so it can name a domain the app
	// controls and never collides with javascript:, data:, file: and friends.
	privateSchemePattern = regexp.MustCompile(`^[a-z][a-z0-9-]*(\.[a-z0-9-]+)+$`)
)

// ValidateRedirectURI accepts only redirect URIs the authorization endpoint
// can compare by exact string equality (RFC 6749 §3.1.2, RFC 8252; no prefix
// or pattern matching, which is what let http://localhost.evil.com/ pass as
// "localhost"):
//
//   - https with a host name or IP literal;
//   - http only to a loopback IP literal (127.0.0.0/8, [::1]) or localhost
//     (RFC 8252 §7.3, §8.3);
//   - a private-use reverse-DNS scheme for native apps (RFC 8252 §7.1), e.g.
//     com.example.app:/callback.
//
// Never a fragment (RFC 6749 §3.1.2), never user-info (it hides the real host:
// http://localhost@evil.com/), nothing that parsing would rewrite: the scheme
// and host must already be lowercase and the host must not be
// percent-encoded, so the string stored is the string a browser is sent to.
func ValidateRedirectURI(raw string) error { return validateURI("redirect_uris", raw) }

// validateURI is ValidateRedirectURI for any field of redirect URIs
// (post_logout_redirect_uris too); errors name field.
func validateURI(field, raw string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: %s: %q %s", ErrInvalidRedirectURI, field, raw, why)
	}
	if raw == "" {
		return bad("is empty")
	}
	if len(raw) > maxRedirectURILen {
		return fmt.Errorf("%w: %s: a URI is longer than %d characters", ErrInvalidRedirectURI, field, maxRedirectURILen)
	}
	for i := 0; i < len(raw); i++ {
		// Whitespace, controls and non-ASCII are never part of a URI (RFC
		// 3986); a backslash is read as a slash by browsers but not by us.
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return bad("contains whitespace, control, non-ASCII or backslash characters")
		}
	}
	if strings.Contains(raw, "#") {
		return bad("must not contain a fragment")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("is not a URI")
	}
	if u.Scheme == "" {
		return bad("must be an absolute URI")
	}
	if !strings.HasPrefix(raw, u.Scheme+":") {
		return bad("must have a lowercase scheme")
	}
	if u.User != nil {
		return bad("must not contain user-info")
	}
	switch u.Scheme {
	case "https":
		return checkAuthority(raw, u, false, bad)
	case "http":
		return checkAuthority(raw, u, true, bad)
	}
	if !privateSchemePattern.MatchString(u.Scheme) {
		return bad("must use https, loopback http or a reverse-DNS private-use scheme such as com.example.app:/callback")
	}
	// RFC 8252 §7.1: "scheme:/path", one slash; an authority means nothing
	// to the operating system that routes the URI to the app.
	if u.Opaque != "" || u.Host != "" || !strings.HasPrefix(raw, u.Scheme+":/") || strings.HasPrefix(raw, u.Scheme+"://") {
		return bad("must be scheme:/path with a single slash, such as com.example.app:/callback (RFC 8252 §7.1)")
	}
	return nil
}

// checkAuthority checks the host and port of an https or http URI; with
// loopbackOnly, the host must be a loopback IP literal or localhost.
func checkAuthority(raw string, u *url.URL, loopbackOnly bool, bad func(string) error) error {
	// url.Parse unescapes the host; insisting the raw authority is u.Host
	// keeps https://ex%61mple.com/ (which would match differently) out.
	rest := strings.TrimPrefix(raw, u.Scheme+"://")
	if rest == raw {
		return bad("must have a host (scheme://host/...)")
	}
	if end := strings.IndexAny(rest, "/?"); end >= 0 {
		rest = rest[:end]
	}
	if rest != u.Host || u.Host == "" {
		return bad("must have a plain host")
	}
	if strings.HasSuffix(u.Host, ":") {
		return bad("has an empty port")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || p[0] == '0' {
			return bad("has an invalid port")
		}
	}
	host := u.Hostname()
	addr, ipErr := netip.ParseAddr(host)
	switch {
	case ipErr == nil:
		// No zones (fe80::1%eth0) and no IPv4-mapped IPv6: one spelling per
		// address.
		if addr.Zone() != "" || addr.Is4In6() {
			return bad("has an unsupported IP literal")
		}
		if addr.Is6() != strings.HasPrefix(u.Host, "[") {
			return bad("has a malformed IP literal")
		}
		if loopbackOnly && !addr.IsLoopback() {
			return bad("may use http only with a loopback address (127.0.0.1, [::1]) or localhost; use https")
		}
	case !dnsNamePattern.MatchString(host) || endsInNumber(host) ||
		!strings.ContainsAny(host[strings.LastIndex(host, ".")+1:], "abcdefghijklmnopqrstuvwxyz"):
		// A top-level label is never a number: 127.1, 256.1.1.1 or
		// 0x7f000001 are malformed addresses that browsers still resolve
		// (the URL standard's "ends in a number" rule).
		return bad("must have a lowercase host name or an IP literal")
	case loopbackOnly && host != "localhost":
		return bad("may use http only with a loopback address (127.0.0.1, [::1]) or localhost; use https")
	}
	return nil
}

// endsInNumber reports whether host's last label is a number as the URL
// standard reads it (decimal digits, or 0x and hex digits): browsers then
// parse the whole host as an IPv4 address.
func endsInNumber(host string) bool {
	last := strings.ToLower(host[strings.LastIndex(host, ".")+1:])
	if hex, ok := strings.CutPrefix(last, "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}
