package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wxidp/wxidp/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "wxidp:", err)
		os.Exit(exitCode(err))
	}
}

// exitTempFail (EX_TEMPFAIL of sysexits.h) tells scripts that the database
// could not be reached and the same command may succeed later.
const exitTempFail = 75

func exitCode(err error) int {
	if errors.Is(err, storage.ErrUnavailable) {
		return exitTempFail
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "wxidp",
		Short:         "OAuth2/OIDC identity provider for WeChat mini-programs",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Flags left unset take their environment variable.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return applyEnv(cmd.Flags()) },
	}
	root.AddCommand(newServeCmd(), newMigrateCmd(), newClientsCmd(), newUsersCmd(), newKeysCmd(), newSecretsCmd(), newJanitorCmd(), newAuditCmd(), newVersionCmd())
	return root
}

const envAnnotation = "env"

// bindEnv ties a flag to an environment variable and says so in --help.
func bindEnv(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	f.Usage += " (env " + env + ")"
	_ = fs.SetAnnotation(name, envAnnotation, []string{env})
}

func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		envs := f.Annotations[envAnnotation]
		if err != nil || f.Changed || len(envs) == 0 {
			return
		}
		v, ok := os.LookupEnv(envs[0])
		if !ok || v == "" {
			return
		}
		// fs.Set, not f.Value.Set: it marks the flag changed, so commands that
		// send only what the user gave (clients update) see it.
		if serr := fs.Set(f.Name, v); serr != nil {
			// Say which variable is wrong, not its value: it may be a secret.
			err = fmt.Errorf("invalid %s: %w", envs[0], serr)
		}
	})
	return err
}

func splitSecrets(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
