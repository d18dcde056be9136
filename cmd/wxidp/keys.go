package main

import (
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/wxidp/wxidp/web"
)

// newKeysCmd drives the admin API, like `clients`, so a rotation goes
// through the same checks whoever asks for it.
func newKeysCmd() *cobra.Command {
	ac := &adminClient{http: &http.Client{Timeout: 30 * time.Second, Transport: cliAgent{http.DefaultTransport}}}
	cmd := &cobra.Command{Use: "keys", Short: "List, rotate or revoke signing keys through the admin API"}
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
		&cobra.Command{
			Use:   "revoke KID",
			Short: "Emergency: remove a leaked key from the JWKS and from signing at once",
			Long: "Deletes the key: tokens it signed stop verifying (introspection answers active:false, userinfo 401).\n" +
				"If it was active, the next key takes over at once, without the wait a rotation keeps, and a new next\n" +
				"key is published. The process serving the request applies it at once, the others within\n" +
				"WXIDP_KEY_RELOAD_INTERVAL; verifiers holding a cached JWKS trust the key until their cache expires\n" +
				"(WXIDP_JWKS_MAX_AGE). See docs/keys.md, \"Emergency revocation\".\n" +
				"A kid may begin with '-' (it is base64url): put -- before it, as in: wxidp keys revoke -- -xOf…",
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return ac.do(cmd.Context(), http.MethodDelete, "/admin/keys/"+url.PathEscape(args[0]), nil, cmd.OutOrStdout())
			},
		},
	)
	return cmd
}

// cliAgent names the CLI in the User-Agent, so the admin API's log of a
// revocation says it came from `wxidp keys`.
type cliAgent struct{ next http.RoundTripper }

func (t cliAgent) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
	r.Header.Set("User-Agent", web.CLIUserAgent)
	return t.next.RoundTrip(r)
}
