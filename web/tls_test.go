package web

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a fresh self-signed certificate for 127.0.0.1 with the
// given serial to certFile and keyFile, replacing them by rename as
// certificate tools do, and returns it.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
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
	replaceFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	replaceFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func replaceFile(t *testing.T, name string, data []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

func servedSerial(t *testing.T, r *CertReloader) int64 {
	t.Helper()
	c, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.Int64()
}

// TestCertReloader: a renewed pair is served after the next check, at most
// one check a second; a broken pair (a renewal caught halfway) is logged
// once and the last good certificate stays; files that cannot be loaded at
// start are an error.
func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeCert(t, certFile, keyFile, 1)
	var logs bytes.Buffer
	r, err := NewCertReloader(certFile, keyFile, 0, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	if got := servedSerial(t, r); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	writeCert(t, certFile, keyFile, 2)
	if got := servedSerial(t, r); got != 1 {
		t.Fatalf("files checked again within %v: serial %d", CertReloadEvery, got)
	}
	now = now.Add(CertReloadEvery)
	if got := servedSerial(t, r); got != 2 {
		t.Fatalf("after renewal: serial %d, want 2", got)
	}

	// Half a renewal: a new certificate next to the old key.
	keep, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	writeCert(t, certFile, keyFile, 3)
	replaceFile(t, keyFile, keep)
	for range 3 {
		now = now.Add(CertReloadEvery)
		if got := servedSerial(t, r); got != 2 {
			t.Fatalf("mismatched pair: serial %d, want the last good (2)", got)
		}
	}
	if n := strings.Count(logs.String(), "TLS certificate reload failed"); n != 1 {
		t.Errorf("a broken pair logged %d times, want once:\n%s", n, logs.String())
	}
	writeCert(t, certFile, keyFile, 4)
	now = now.Add(CertReloadEvery)
	if got := servedSerial(t, r); got != 4 {
		t.Fatalf("after the renewal completed: serial %d, want 4", got)
	}

	for name, files := range map[string][2]string{
		"missing key": {certFile, filepath.Join(dir, "nope.key")},
		"not PEM":     {keyFile, keyFile},
	} {
		if _, err := NewCertReloader(files[0], files[1], 0, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("%s: NewCertReloader succeeded", name)
		}
	}
}

// TestServeTLS serves over TLS 1.2+ with the reloader's certificate and
// refuses older versions.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert := writeCert(t, certFile, keyFile, 7)
	r, err := NewCertReloader(certFile, keyFile, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), ServeOptions{TLS: r.TLSConfig()})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); got != 7 {
		t.Errorf("served serial %d, want 7", got)
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	} else if !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1 refused for another reason: %v", err)
	}
}
