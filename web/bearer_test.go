package web

import (
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	t.Parallel()
	cases := []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc.DEF-123_~+/=", "abc.DEF-123_~+/=", true},
		// RFC 7235 §2.1: the scheme is case-insensitive.
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"bEaReR abc", "abc", true},
		{"Bearer   abc  ", "abc", true},
		{"", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"Bearerabc", "", false},
		{"Basic YWJjOmRlZg==", "", false},
		{"Bearer\tabc", "", false},
		{"Bearer abc def", "", false}, // two credentials: refuse, do not guess
		{"Bearer abc\x00", "", false},
		{"Bearer abc\x7f", "", false},
		{" Bearer abc", "", false},
	}
	for _, tc := range cases {
		tok, ok := bearerToken(tc.header)
		if tok != tc.token || ok != tc.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tc.header, tok, ok, tc.token, tc.ok)
		}
	}
}

// FuzzBearerToken: never panics; an accepted token is non-empty, holds no
// space or control character, occurs in the header, and is what a
// canonical header built from it yields.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc ", "Basic x", "Bearer", "BEARER a b", "Bearer \x00", "Bearer é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := bearerToken(header)
		if !ok {
			if tok != "" {
				t.Fatalf("refused %q but returned %q", header, tok)
			}
			return
		}
		if tok == "" || !strings.Contains(header, tok) {
			t.Fatalf("%q gave token %q", header, tok)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] <= ' ' || tok[i] == 0x7f {
				t.Fatalf("%q gave token %q with byte %#x", header, tok, tok[i])
			}
		}
		if again, ok := bearerToken("Bearer " + tok); !ok || again != tok {
			t.Fatalf("canonical header for %q gave %q, %v", tok, again, ok)
		}
	})
}
