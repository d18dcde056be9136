package keys

// Every test here runs in both builds (go test ./keys/ and go test -tags
// openssl ./keys/) and covers each signer in Signers(): the OpenSSL signer
// must pass exactly what crypto/rsa passes.

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
)

func signerNames() []string {
	var names []string
	for name := range Signers() {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func newSigner(t testing.TB, name string, priv *rsa.PrivateKey) RS256Signer {
	t.Helper()
	s, err := Signers()[name](priv)
	if err != nil {
		t.Fatalf("%s signer: %v", name, err)
	}
	t.Cleanup(s.Close)
	return s
}

func genKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func referenceSig(t testing.TB, priv *rsa.PrivateKey, input []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(input)
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// signingInput is shaped like what go-jose hands a signer.
func signingInput(i int) []byte {
	enc := base64.RawURLEncoding.EncodeToString
	return []byte(enc([]byte(`{"alg":"RS256","kid":"k","typ":"JWT"}`)) + "." +
		enc([]byte(`{"sub":"user-`+strconv.Itoa(i)+`","exp":4102444800,"scp":["openid"]}`)))
}

func TestRS256SignersBuiltIn(t *testing.T) {
	got := Signers()
	if _, ok := got["go"]; !ok {
		t.Error(`Signers() lacks "go"`)
	}
	if _, ok := got[SignerName]; !ok {
		t.Errorf("Signers() lacks SignerName %q", SignerName)
	}
	// CI sets WXIDP_TEST_SIGNER in the tagged run, so that a build that
	// silently fell back to crypto/rsa (CGO_ENABLED=0) fails here.
	if want := os.Getenv("WXIDP_TEST_SIGNER"); want != "" && want != SignerName {
		t.Fatalf("SignerName %q, want %q (WXIDP_TEST_SIGNER)", SignerName, want)
	}
	if SignerVersion() == "" {
		t.Error("SignerVersion is empty")
	}
}

func TestRS256SignatureEqualsCryptoRSA(t *testing.T) {
	t.Parallel()
	big := make([]byte, 64<<10)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]byte{"empty": {}, "nil": nil, "one byte": {0}, "jws": signingInput(1), "64 KiB": big}
	for _, bits := range []int{RSABits, 3072} {
		priv := genKey(t, bits)
		for _, name := range signerNames() {
			s := newSigner(t, name, priv)
			for what, in := range inputs {
				got, err := s.Sign(in)
				if err != nil {
					t.Fatalf("%s/%d/%s: %v", name, bits, what, err)
				}
				if want := referenceSig(t, priv, in); !bytes.Equal(got, want) {
					t.Errorf("%s/%d/%s: signature differs from crypto/rsa's", name, bits, what)
				}
				sum := sha256.Sum256(in)
				if err := rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA256, sum[:], got); err != nil {
					t.Errorf("%s/%d/%s: rsa.VerifyPKCS1v15: %v", name, bits, what, err)
				}
			}
		}
	}
}

// The openssl command line is a verifier that shares no code with either
// signer's Go side, nor with crypto/rsa.
func TestRS256VerifiedByOpenSSLCLI(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("the openssl command is required as the independent verifier " +
			"(Debian: apt-get install openssl; scripts/ensure-libssl installs it)")
	}
	priv := genKey(t, RSABits)
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pubPath, dataPath, sigPath := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "data"), filepath.Join(dir, "sig")
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	verify := func(data, sig []byte) (string, error) {
		write(dataPath, data)
		write(sigPath, sig)
		out, err := exec.Command(bin, "dgst", "-sha256", "-verify", pubPath, "-signature", sigPath, dataPath).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, name := range signerNames() {
		s := newSigner(t, name, priv)
		for i := range 3 {
			in := signingInput(i)
			sig, err := s.Sign(in)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := verify(in, sig); err != nil || out != "Verified OK" {
				t.Errorf("%s: openssl dgst -verify: %q, %v", name, out, err)
			}
			// The verifier must be able to say no.
			sig[len(sig)-1] ^= 1
			if out, err := verify(in, sig); err == nil {
				t.Fatalf("%s: openssl accepted a corrupted signature: %q", name, out)
			}
		}
	}
}

func TestRS256ConcurrentSigning(t *testing.T) {
	t.Parallel()
	const goroutines, each = 16, 6
	priv := genKey(t, RSABits)
	want := make([][]byte, goroutines)
	for g := range want {
		want[g] = referenceSig(t, priv, signingInput(g))
	}
	for _, name := range signerNames() {
		s := newSigner(t, name, priv)
		var wg sync.WaitGroup
		errs := make([]error, goroutines)
		for g := range goroutines {
			wg.Go(func() {
				for range each {
					got, err := s.Sign(signingInput(g))
					if err == nil && !bytes.Equal(got, want[g]) {
						err = errors.New("wrong signature")
					}
					if err != nil {
						errs[g] = err
						return
					}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRS256SignAfterClose(t *testing.T) {
	t.Parallel()
	priv := genKey(t, RSABits)
	for _, name := range signerNames() {
		s := newSigner(t, name, priv)
		s.Close()
		s.Close() // harmless
		if _, err := s.Sign(signingInput(0)); !errors.Is(err, ErrSignerClosed) {
			t.Errorf("%s: Sign after Close: %v, want ErrSignerClosed", name, err)
		}
	}
}

// Close while others sign: each signature is either whole and right or
// ErrSignerClosed, never a crash or garbage (use after free in C).
func TestRS256CloseWhileSigning(t *testing.T) {
	t.Parallel()
	priv := genKey(t, RSABits)
	want := referenceSig(t, priv, signingInput(0))
	for _, name := range signerNames() {
		s := newSigner(t, name, priv)
		var signed, closed atomic.Int64
		var wg sync.WaitGroup
		bad := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				for {
					got, err := s.Sign(signingInput(0))
					switch {
					case errors.Is(err, ErrSignerClosed):
						closed.Add(1)
						return
					case err != nil:
						bad <- err
						return
					case !bytes.Equal(got, want):
						bad <- errors.New("wrong signature")
						return
					}
					signed.Add(1)
				}
			})
		}
		for signed.Load() < 4 {
			time.Sleep(time.Millisecond)
		}
		s.Close()
		wg.Wait()
		close(bad)
		for err := range bad {
			t.Errorf("%s: %v", name, err)
		}
		if closed.Load() != 8 {
			t.Errorf("%s: %d of 8 signing goroutines saw ErrSignerClosed", name, closed.Load())
		}
	}
}

func TestRS256RejectsNoKey(t *testing.T) {
	for _, name := range signerNames() {
		if _, err := Signers()[name](nil); err == nil {
			t.Errorf("%s: a nil key was accepted", name)
		}
	}
}

func TestOpaqueRS256RefusesOtherAlgorithms(t *testing.T) {
	t.Parallel()
	priv := genKey(t, RSABits)
	o := &opaqueRS256{pub: &priv.PublicKey, s: newSigner(t, SignerName, priv)}
	if _, err := o.SignPayload([]byte("x"), josev3.RS512); !errors.Is(err, josev3.ErrUnsupportedAlgorithm) {
		t.Fatalf("RS512: %v, want ErrUnsupportedAlgorithm", err)
	}
}

// BenchmarkRS256 measures each signer's ceiling on all cores (GOMAXPROCS
// goroutines): go test -run '^$' -bench RS256 [-tags openssl] ./keys/
func BenchmarkRS256(b *testing.B) {
	priv := genKey(b, RSABits)
	in := signingInput(0)
	for _, name := range signerNames() {
		b.Run(name, func(b *testing.B) {
			s := newSigner(b, name, priv)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Sign(in); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
		})
	}
}

// BenchmarkRS256Leak reports how much the resident set grows over b.N
// signatures, which catches C memory the Go heap statistics cannot see.
// Run it for 100k signatures:
//
//	go test -run '^$' -bench RS256Leak -benchtime 100000x -tags openssl ./keys/
func BenchmarkRS256Leak(b *testing.B) {
	priv := genKey(b, RSABits)
	in := signingInput(0)
	for _, name := range signerNames() {
		b.Run(name, func(b *testing.B) {
			s := newSigner(b, name, priv)
			for range 1000 { // warm up OpenSSL's and the runtime's pools
				if _, err := s.Sign(in); err != nil {
					b.Fatal(err)
				}
			}
			start := rssKiB(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Sign(in); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			growth := rssKiB(b) - start
			b.ReportMetric(float64(growth), "rss-growth-KiB")
			// A leak of even 100 bytes a signature is 10 MB over 100k.
			if b.N >= 100_000 && growth > 8<<10 {
				b.Fatalf("resident set grew %d KiB over %d signatures", growth, b.N)
			}
		})
	}
}

// rssKiB is this process's resident set after returning the Go heap's
// free memory to the OS, so what remains growing is live or C memory.
func rssKiB(b *testing.B) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status:", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib); err != nil {
				b.Fatal(err)
			}
			return kib
		}
	}
	b.Skip("no VmRSS in /proc/self/status")
	return 0
}
