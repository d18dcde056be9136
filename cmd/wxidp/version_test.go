package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/wxidp/wxidp/keys"
)

func TestVersionNamesSigner(t *testing.T) {
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "rs256 signer: " + keys.SignerName + " (" + keys.SignerVersion() + ")\n"
	if !strings.Contains(out.String(), want) {
		t.Fatalf("version printed %q, want a line %q", out.String(), want)
	}
	if keys.SignerName == "openssl" && !strings.Contains(out.String(), "OpenSSL 3") {
		t.Errorf("the openssl build does not name the OpenSSL it runs with: %q", out.String())
	}
	// CI sets WXIDP_TEST_SIGNER for the tagged run: a build that fell back
	// to crypto/rsa (say, CGO_ENABLED=0) must not pass for the fast one.
	if sig := os.Getenv("WXIDP_TEST_SIGNER"); sig != "" && !strings.Contains(out.String(), "rs256 signer: "+sig+" ") {
		t.Fatalf("version printed %q, want signer %s (WXIDP_TEST_SIGNER)", out.String(), sig)
	}
}
