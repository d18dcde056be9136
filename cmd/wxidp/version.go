package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wxidp/wxidp/keys"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build: version, commit, Go, and which RS256 signer signs tokens",
		Long: "The signer is \"go\" (crypto/rsa) in the default build and \"openssl\" (libcrypto through cgo)\n" +
			"in a build with -tags openssl; see docs/BENCHMARKS.md, \"Signers\".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), versionText())
			return err
		},
	}
}

func versionText() string {
	version, commit := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if commit != "" && modified {
			commit += " (modified)"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "wxidp %s\n", version)
	if commit != "" {
		fmt.Fprintf(&b, "commit: %s\n", commit)
	}
	fmt.Fprintf(&b, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "rs256 signer: %s (%s)\n", keys.SignerName, keys.SignerVersion())
	return b.String()
}
