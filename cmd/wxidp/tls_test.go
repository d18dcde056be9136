package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTestCert writes a fresh self-signed certificate for 127.0.0.1 with
// the given serial, replacing the files by rename as certificate tools do.
func writeTestCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "wxidp test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(name+".tmp", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(name+".tmp", name); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestTLSBothListenersReload serves both listeners of a real process over
// TLS from WXIDP_TLS_CERT/KEY, sends HSTS (the issuer is https), and serves
// a renewed certificate on new connections without a restart.
func TestTLSBothListenersReload(t *testing.T) {
	t.Parallel()
	bin := buildWxidp(t)
	dsn := migratedDB(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeTestCert(t, certFile, keyFile, 1)
	p := startServeProcess(t, bin, "https", append(os.Environ(),
		"WXIDP_DATABASE_URL="+dsn, "WXIDP_SECRETS="+testSecret, "WXIDP_ADMIN_TOKEN="+testAdminToken,
		"WXIDP_ISSUER=https://wxidp.test", "WXIDP_TLS_CERT="+certFile, "WXIDP_TLS_KEY="+keyFile,
		"WXIDP_PUBLIC_ADDR=127.0.0.1:0", "WXIDP_ADMIN_ADDR=127.0.0.1:0"))

	roots := x509.NewCertPool()
	roots.AddCert(first)
	// A new connection per request, so each one shows the certificate the
	// server holds now.
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	// served returns the serial of the certificate each listener serves now.
	served := func(t *testing.T) map[string]int64 {
		t.Helper()
		out := map[string]int64{}
		for name, target := range map[string]string{"public": p.issuer + "/healthz", "admin": p.admin + "/admin/clients"} {
			req, _ := http.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("Authorization", "Bearer "+testAdminToken)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d", name, resp.StatusCode)
			}
			if name == "public" && resp.Header.Get("Strict-Transport-Security") == "" {
				t.Error("no Strict-Transport-Security with an https issuer")
			}
			out[name] = resp.TLS.PeerCertificates[0].SerialNumber.Int64()
		}
		return out
	}
	if got := served(t); got["public"] != 1 || got["admin"] != 1 {
		t.Fatalf("served serials %v, want 1 on both", got)
	}
	if resp, err := http.Get("http://" + p.publicAddr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP served on the TLS listener")
		}
	}

	roots.AddCert(writeTestCert(t, certFile, keyFile, 2))
	// The files are checked at most once a second, at a handshake.
	deadline := time.Now().Add(10 * time.Second)
	for got := served(t); got["public"] != 2 || got["admin"] != 2; got = served(t) {
		if time.Now().After(deadline) {
			t.Fatalf("served serials %v 10s after renewal, want 2 on both", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(p.logs.String(), "TLS certificate reloaded") {
		t.Error("the reload is not logged")
	}
}

// TestTLSStartupErrors: TLS settings that cannot work stop start-up with a
// message naming them, before anything else is touched.
func TestTLSStartupErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeTestCert(t, certFile, keyFile, 1)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		mutate func(*serveConfig)
		want   string
	}{
		"cert without key": {func(c *serveConfig) { c.TLSCert = certFile }, "WXIDP_TLS_KEY"},
		"key without cert": {func(c *serveConfig) { c.TLSKey = keyFile }, "WXIDP_TLS_CERT"},
		"missing files":    {func(c *serveConfig) { c.TLSCert, c.TLSKey = certFile+".gone", keyFile }, "tls.crt.gone"},
		"garbage cert":     {func(c *serveConfig) { c.TLSCert, c.TLSKey = garbage, keyFile }, "load TLS certificate"},
		"swapped files":    {func(c *serveConfig) { c.TLSCert, c.TLSKey = keyFile, certFile }, "load TLS certificate"},
		"negative timeout": {func(c *serveConfig) { c.ShutdownTimeout = -time.Second }, "WXIDP_SHUTDOWN_TIMEOUT"},
	} {
		t.Run(name, func(t *testing.T) {
			// No database is reached: the checks come first.
			cfg := testConfig("postgres://postgres@127.0.0.1:1/none?connect_timeout=1")
			tc.mutate(&cfg)
			err := runServe(context.Background(), cfg, io.Discard, quietLog())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
