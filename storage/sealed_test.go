package storage

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The associated data formats are those values in databases were sealed
// with before the registry existed; they can never change.
func TestSealedAADFormats(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    Sealed
		want string
	}{
		{Sealed{Kind: SealedSigningKey, ID: []string{"kid-1"}}, "wxidp/signing-key/kid-1"},
		{Sealed{Kind: SealedAppSecret, ID: []string{"client-1", "wxapp1"}}, "wxidp/wechat-app-secret/wxapp1"},
		{Sealed{Kind: SealedSessionKey, ID: []string{"wxapp1", "o-1"}}, "wxidp/wechat-session-key/wxapp1/o-1"},
		{Sealed{Kind: SealedWeChatToken, ID: []string{"wxapp1"}}, "wxidp/wechat-access-token/wxapp1"},
	} {
		got, err := tc.v.AAD()
		if err != nil || string(got) != tc.want {
			t.Errorf("%s AAD = %q, %v; want %q", tc.v.Kind, got, err, tc.want)
		}
	}
	if got := SealedSessionKey.AAD("wxapp1", "o-1"); string(got) != "wxidp/wechat-session-key/wxapp1/o-1" {
		t.Errorf("SealedSessionKey.AAD = %q", got)
	}
}

func TestSealedSpecsAreConsistent(t *testing.T) {
	t.Parallel()
	kinds, places, prefixes := map[SealedKind]bool{}, map[string]bool{}, map[string]bool{}
	for _, s := range SealedSpecs() {
		place := s.Table + "." + s.Column
		if kinds[s.Kind] || places[place] || prefixes[s.aadPrefix] {
			t.Errorf("%s: kind, column or AAD prefix used twice", s.Kind)
		}
		kinds[s.Kind], places[place], prefixes[s.aadPrefix] = true, true, true
		if s.Table == "" || s.Column == "" || s.KeyColumns < 1 || s.KeyColumns > len(s.IDColumns) {
			t.Errorf("%s: incomplete location %+v", s.Kind, s)
		}
		for _, p := range append(append([]int(nil), s.aadParts...), s.personal...) {
			if p < 0 || p >= len(s.IDColumns) {
				t.Errorf("%s: ID part %d out of range", s.Kind, p)
			}
		}
		// Prefixes end in "/" so no kind's AAD is another's with a
		// longer ID.
		if len(s.aadParts) == 0 || !strings.HasPrefix(s.aadPrefix, "wxidp/") || !strings.HasSuffix(s.aadPrefix, "/") {
			t.Errorf("%s: AAD %q binds nothing or is not namespaced", s.Kind, s.aadPrefix)
		}
	}
}

func TestSealedAADRejectsMisshapenIDs(t *testing.T) {
	t.Parallel()
	for _, v := range []Sealed{
		{Kind: SealedSessionKey, ID: []string{"wxapp1"}},
		{Kind: SealedSigningKey, ID: []string{"a", "b"}},
		{Kind: "unknown", ID: []string{"a"}},
	} {
		if aad, err := v.AAD(); err == nil {
			t.Errorf("%s %q: AAD %q, want an error", v.Kind, v.ID, aad)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("SealedSessionKey.AAD with one part did not panic")
		}
	}()
	SealedSessionKey.AAD("wxapp1")
}

// Error messages name a value; an openid is personal data and shows only
// hashed.
func TestSealedNameHidesPersonalData(t *testing.T) {
	t.Parallel()
	name := Sealed{Kind: SealedSessionKey, ID: []string{"wxapp1", "o-secretive"}, Value: []byte("v")}.Name()
	if strings.Contains(name, "o-secretive") || !strings.Contains(name, "wxapp1") || !strings.Contains(name, "open_id#") {
		t.Errorf("Name = %q, want the appid and a hash of the openid", name)
	}
	if name := (Sealed{Kind: SealedSigningKey, ID: []string{"kid-1"}}).Name(); name != "signing_key kid=kid-1" {
		t.Errorf("Name = %q", name)
	}
}

// Every place that seals or opens a value gets its associated data from
// the registry: no Go source outside this file spells an AAD prefix.
func TestAADOnlyFromRegistry(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from storage/: %v", err)
	}
	var prefixes []string
	for _, s := range SealedSpecs() {
		prefixes = append(prefixes, s.aadPrefix)
	}
	self, err := filepath.Abs("sealed.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || path == self {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			// A file mid-edit elsewhere in the tree: the compiler will
			// report it; scan its bytes instead.
			for _, p := range prefixes {
				if bytes.Contains(src, []byte(p)) {
					t.Errorf("%s spells the AAD prefix %q; use storage.SealedKind.AAD", path, p)
				}
			}
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, p := range prefixes {
				if strings.Contains(s, strings.TrimSuffix(p, "/")) {
					t.Errorf("%s: %q spells the AAD prefix %q; use storage.SealedKind.AAD", fset.Position(lit.Pos()), s, p)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("scanned only %d Go files under %s", checked, root)
	}
}
