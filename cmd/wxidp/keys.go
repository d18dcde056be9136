package main

import (
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// newKeysCmd drives the admin API, like `clients`, so a rotation goes
// through the same checks whoever asks for it.
func newKeysCmd() *cobra.Command {
	ac := &adminClient{http: &http.Client{Timeout: 30 * time.Second}}
	cmd := &cobra.Command{Use: "keys", Short: "List or rotate signing keys through the admin API"}
	ac.flags(cmd)
	cmd.AddCommand(
		&cobra.Command{
			Use: "list", Short: "Show each key's kid, state and dates", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return ac.do(cmd.Context(), http.MethodGet, "/admin/keys", nil, cmd.OutOrStdout())
			},
		},
		&cobra.Command{
			Use:   "rotate",
			Short: "Promote the next key to active, retire the active one, publish a new next key",
			Long: "Refused (409) while the next key has been published for less than the JWKS cache lifetime,\n" +
				"so that no verifier sees a token signed by a key it does not know.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return ac.do(cmd.Context(), http.MethodPost, "/admin/keys/rotate", nil, cmd.OutOrStdout())
			},
		},
	)
	return cmd
}
