package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/provider"
	"github.com/wxidp/wxidp/storage/postgres"
)

func newSecretsCmd() *cobra.Command {
	var dsn, secrets string
	cmd := &cobra.Command{Use: "secrets", Short: "Manage the system secrets (WXIDP_SECRETS)"}
	re := &cobra.Command{
		Use:   "reencrypt",
		Short: "Re-encrypt every stored secret under the first of WXIDP_SECRETS",
		Long: "Put the new secret first in WXIDP_SECRETS, keep the old ones after it, run this (serve also does it\n" +
			"at start-up when several secrets are configured), then drop the old secrets. Client-secret hashes\n" +
			"cannot be re-keyed without the client secret: see docs/client-secrets.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReencrypt(cmd.Context(), dsn, secrets, cmd.OutOrStdout())
		},
	}
	addDatabaseFlag(re, &dsn)
	re.Flags().StringVar(&secrets, "secrets", "", "comma-separated system secrets; the first encrypts")
	bindEnv(re.Flags(), "secrets", "WXIDP_SECRETS")
	cmd.AddCommand(re)
	return cmd
}

func runReencrypt(ctx context.Context, dsn, secrets string, out io.Writer) error {
	if dsn == "" || secrets == "" {
		return errors.New("WXIDP_DATABASE_URL and WXIDP_SECRETS are required")
	}
	cipher, err := keys.NewCipher(splitSecrets(secrets))
	if err != nil {
		return fmt.Errorf("WXIDP_SECRETS: %w", err)
	}
	pool, err := postgres.Open(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to database: %w", err)
	}
	defer pool.Close()
	n, err := provider.Reseal(ctx, postgres.New(pool), cipher)
	fmt.Fprintf(out, "re-encrypted %d values\n", n)
	return err
}
