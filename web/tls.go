package web

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertReloadEvery is how often, at most, a handshake looks at the
// certificate files: a stat per handshake would be cheap, but not free
// under a burst of new connections.
const CertReloadEvery = time.Second

// CertReloader serves the certificate in a pair of PEM files and picks up a
// new pair when either file changes (renewal by certbot, cert-manager or a
// Kubernetes secret), without a restart. A pair that fails to load (a
// renewal caught halfway, a key that does not match) is logged once and the
// last good certificate stays in use.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	every             time.Duration
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]os.FileInfo // of the files when last loaded or tried
	checked time.Time
	lastErr string // the failure last logged
}

// NewCertReloader loads the pair now, so a server never starts without a
// usable certificate. every bounds how often the files are checked; zero
// means CertReloadEvery.
func NewCertReloader(certFile, keyFile string, every time.Duration, log *slog.Logger) (*CertReloader, error) {
	if every <= 0 {
		every = CertReloadEvery
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log, every: every, now: time.Now}
	stamp, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	r.cert, r.stamp, r.checked = &cert, stamp, r.now()
	return r, nil
}

// TLSConfig is the configuration both listeners share: TLS 1.2 or later,
// the certificate from the reloader.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// reloaded first if the files changed since the last check.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= r.every {
		r.checked = now
		r.reloadIfChanged()
	}
	return r.cert, nil
}

// reloadIfChanged runs under r.mu.
func (r *CertReloader) reloadIfChanged() {
	stamp, err := r.stat()
	if err == nil && same(stamp[0], r.stamp[0]) && same(stamp[1], r.stamp[1]) {
		return
	}
	// Remember the files even if they fail to load: the next change (the
	// other half of a renewal) is tried again, an unchanged bad pair is not.
	r.stamp = stamp
	if err == nil {
		var cert tls.Certificate
		if cert, err = tls.LoadX509KeyPair(r.certFile, r.keyFile); err == nil {
			r.cert, r.lastErr = &cert, ""
			r.log.Info("TLS certificate reloaded", "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
			return
		}
	}
	// Logged once per distinct failure, not at every check while a file
	// is missing.
	if msg := err.Error(); msg != r.lastErr {
		r.lastErr = msg
		r.log.Error("TLS certificate reload failed; keeping the current certificate", "err", err)
	}
}

func (r *CertReloader) stat() ([2]os.FileInfo, error) {
	var out [2]os.FileInfo
	var errs []error
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name) // follows symlinks, as Kubernetes secrets swap them
		if err != nil {
			errs = append(errs, err)
		}
		out[i] = fi
	}
	return out, errors.Join(errs...)
}

// same reports whether a file is unchanged: same file (a rename over it
// makes a new one), same size and modification time.
func same(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
