package main

import (
	"errors"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wxidp/wxidp/web"
)

// addTLSFlags adds --tls-cert and --tls-key: with both, both listeners
// serve HTTPS.
func addTLSFlags(cmd *cobra.Command, cert, key *string) {
	fs := cmd.Flags()
	fs.StringVar(cert, "tls-cert", "", "PEM certificate (chain) file; with --tls-key both listeners serve TLS, reloading the files when they change")
	fs.StringVar(key, "tls-key", "", "PEM private key file of --tls-cert")
	bindEnv(fs, "tls-cert", "WXIDP_TLS_CERT")
	bindEnv(fs, "tls-key", "WXIDP_TLS_KEY")
}

func validateTLS(cert, key string) error {
	if (cert == "") != (key == "") {
		return errors.New("WXIDP_TLS_CERT (--tls-cert) and WXIDP_TLS_KEY (--tls-key) go together: set both or neither")
	}
	return nil
}

// serveOptions builds what both listeners are served with. The certificate
// is loaded now, so a server never starts unable to answer a handshake.
func (cfg *serveConfig) serveOptions(log *slog.Logger) (web.ServeOptions, error) {
	opts := web.ServeOptions{ShutdownTimeout: cfg.ShutdownTimeout}
	if cfg.TLSCert == "" {
		return opts, nil
	}
	certs, err := web.NewCertReloader(cfg.TLSCert, cfg.TLSKey, 0, log)
	if err != nil {
		return opts, err
	}
	if !strings.HasPrefix(cfg.Issuer, "https://") {
		log.Warn("TLS is on but the issuer is not an https URL: clients will be told to use plain HTTP", "issuer", cfg.Issuer)
	}
	opts.TLS = certs.TLSConfig()
	return opts, nil
}
