package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/keys"
	"github.com/wxidp/wxidp/storage"
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
	store := postgres.New(pool)
	n, err := reencrypt(ctx, store, cipher, audit.NewRecorder(store, nil), audit.ActorCLI)
	fmt.Fprintf(out, "re-encrypted %d values\n", n)
	return err
}

// reencrypt re-encrypts every stored secret under the first of
// WXIDP_SECRETS (keys.Reseal) and records it in the audit trail: the
// target names the secret the values are now sealed under by its
// fingerprint, the details how many values moved and, on failure, that it
// stopped (the error itself names a value, and stays in the caller's log).
func reencrypt(ctx context.Context, store storage.Resealer, cipher *keys.Cipher, rec *audit.Recorder, actor string) (int, error) {
	n, err := keys.Reseal(ctx, store, cipher)
	if n == 0 && err == nil && actor == audit.ActorSystem {
		// serve re-checks at every start while several secrets are listed:
		// a run that changed nothing is not an event. An operator's explicit
		// `wxidp secrets reencrypt` is recorded either way.
		return 0, nil
	}
	details, outcome := map[string]string{"count": strconv.Itoa(n)}, audit.Success
	if err != nil {
		details["error"], outcome = "stopped", audit.Failure
	}
	target := ""
	// The fingerprint of an empty value sealed now is that of the first
	// secret; it reveals nothing of the secret (keys.Fingerprint).
	if probe, serr := cipher.Seal(nil, nil); serr == nil {
		target = "secret:" + keys.Fingerprint(probe)
	}
	rec.Record(ctx, audit.Event{Type: audit.SecretsReencrypted, Actor: actor, Target: target, Outcome: outcome, Details: details})
	return n, err
}

// checkSecretsInUse refuses to start when a stored secret (of any kind) was
// sealed under a secret missing from WXIDP_SECRETS: serving would fail at
// the first login that needs it. It reads only the headers, from an index.
// A nil store is one without the capability (the memory store): it starts
// empty in every process, so nothing in it is sealed under another secret.
func checkSecretsInUse(ctx context.Context, store storage.Resealer, cipher *keys.Cipher) error {
	if store == nil {
		return nil
	}
	headers, err := store.SealedHeaders(ctx)
	if err != nil {
		return fmt.Errorf("check stored secrets (has `wxidp migrate up` run?): %w", err)
	}
	var missing []error
	for kind, hs := range headers {
		for _, h := range hs {
			if !cipher.Recognizes(h) {
				missing = append(missing, fmt.Errorf("stored %s values are sealed under secret %s", kind, keys.Fingerprint(h)))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("WXIDP_SECRETS lacks a secret still in use (keep the old secret after the new one and run `wxidp secrets reencrypt` first): %w",
			errors.Join(missing...))
	}
	return nil
}
