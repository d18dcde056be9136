package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/wxidp/wxidp/web"
)

// addShutdownFlag adds --shutdown-timeout: how long SIGTERM lets requests in
// flight finish. Load balancers and orchestrators give a process a grace
// period before they kill it (Kubernetes: 30 s); this must fit inside it.
func addShutdownFlag(cmd *cobra.Command, dst *time.Duration) {
	cmd.Flags().DurationVar(dst, "shutdown-timeout", web.DefaultShutdownTimeout,
		"on SIGTERM, how long requests in flight may take to finish before their connections are cut (0 = the default)")
	bindEnv(cmd.Flags(), "shutdown-timeout", "WXIDP_SHUTDOWN_TIMEOUT")
}

func validateShutdown(timeout time.Duration) error {
	if timeout < 0 {
		return errors.New("WXIDP_SHUTDOWN_TIMEOUT (--shutdown-timeout) cannot be negative")
	}
	return nil
}

// announceShutdown logs when the drain begins (ctx ends), so the log shows
// how long the drain took.
func announceShutdown(ctx context.Context, timeout time.Duration, log *slog.Logger) func() error {
	return func() error {
		<-ctx.Done()
		log.Info("wxidp shutting down: no new connections, draining requests in flight", "shutdown_timeout", orDefaultShutdown(timeout).String())
		return nil
	}
}

func orDefaultShutdown(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return web.DefaultShutdownTimeout
	}
	return timeout
}

// shutdownResult turns what the serving goroutines returned into runServe's
// answer. A drain cut short by the timeout still ends in a clean exit: the
// stop was asked for, and the cut requests are logged, not an error.
func shutdownResult(err error, timeout time.Duration, log *slog.Logger) error {
	if errors.Is(err, web.ErrShutdownTimeout) {
		log.Warn("shutdown: requests still running after the shutdown timeout were cut", "shutdown_timeout", orDefaultShutdown(timeout).String())
		return nil
	}
	return err
}
