//go:build openssl && cgo

package keys

/*
#cgo pkg-config: libcrypto
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/rsa.h>

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "keys: the openssl signer needs OpenSSL 3.0 or later (Debian: libssl-dev)"
#endif

// Every function leaves this thread's OpenSSL error queue empty and hands
// back the first error code instead: the next cgo call may run on another
// OS thread, and a stale queue would be blamed on an unrelated operation.

// wx_load parses a PKCS#1 or PKCS#8 DER RSA private key.
static EVP_PKEY *wx_load(const unsigned char *der, long len, unsigned long *err) {
	const unsigned char *p = der;
	EVP_PKEY *pkey = d2i_AutoPrivateKey(NULL, &p, len);
	*err = 0;
	if (pkey == NULL) {
		*err = ERR_get_error();
	} else if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
	ERR_clear_error();
	return pkey;
}

// wx_sha256 fetches SHA-256 once per key: with the legacy EVP_sha256()
// OpenSSL 3 would look the implementation up on every signature.
static EVP_MD *wx_sha256(unsigned long *err) {
	EVP_MD *md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
	*err = md == NULL ? ERR_get_error() : 0;
	ERR_clear_error();
	return md;
}

// wx_sign makes one RSASSA-PKCS1-v1_5 signature. The EVP_MD_CTX is per
// call, so concurrent calls share only the read-only pkey and md.
static int wx_sign(EVP_PKEY *pkey, EVP_MD *md, const unsigned char *in, size_t inlen,
                   unsigned char *sig, size_t *siglen, unsigned long *err) {
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx != NULL
		&& EVP_DigestSignInit(ctx, &pctx, md, NULL, pkey) == 1
		&& EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1
		&& EVP_DigestSign(ctx, sig, siglen, in, inlen) == 1;
	*err = ok ? 0 : ERR_get_error();
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	return ok;
}
*/
import "C"

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// SignerName names the RS256 signer tokens are signed with in this build:
// "openssl" here; "go" in the default build (see docs/BENCHMARKS.md,
// "Signers").
const SignerName = "openssl"

// SignerVersion describes the signer's implementation, for `wxidp version`:
// the libcrypto loaded at run time, which may be newer than the headers the
// binary was built with.
func SignerVersion() string {
	return C.GoString(C.OpenSSL_version(C.OPENSSL_VERSION))
}

func newRS256(priv *rsa.PrivateKey) (RS256Signer, error) { return newOpenSSLRS256(priv) }

// opensslKey is the C half of a signer, a value so that the cleanup can own
// a copy without keeping the signer reachable.
type opensslKey struct {
	pkey *C.EVP_PKEY
	md   *C.EVP_MD
	size int // signature length in bytes
}

func (k opensslKey) free() {
	C.EVP_MD_free(k.md)
	C.EVP_PKEY_free(k.pkey)
}

// opensslRS256 signs with libcrypto's EVP_DigestSign. The key lives in C
// memory for as long as the signer: Close (when the manager drops the key)
// or, failing that, a GC cleanup frees it.
type opensslRS256 struct {
	mu      sync.RWMutex // readers sign; Close waits for them before freeing
	key     opensslKey   // zero once closed
	cleanup runtime.Cleanup
}

// selfTestInput is signed by both signers when a key is loaded: OpenSSL
// must produce crypto/rsa's signature byte for byte before it signs a token.
var selfTestInput = []byte("wxidp rs256 self-test")

func newOpenSSLRS256(priv *rsa.PrivateKey) (RS256Signer, error) {
	if priv == nil {
		return nil, errors.New("keys: rs256: no private key")
	}
	der := x509.MarshalPKCS1PrivateKey(priv)
	key, err := loadOpenSSLKey(der)
	// The DER copy of the key is ours; wipe it rather than leave it to the GC.
	clear(der)
	if err != nil {
		return nil, err
	}
	o := &opensslRS256{key: key}
	o.cleanup = runtime.AddCleanup(o, opensslKey.free, key)
	if err := o.selfTest(priv); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

func loadOpenSSLKey(der []byte) (opensslKey, error) {
	if len(der) == 0 {
		return opensslKey{}, errors.New("keys: openssl: empty key")
	}
	var code C.ulong
	pkey := C.wx_load((*C.uchar)(unsafe.Pointer(&der[0])), C.long(len(der)), &code)
	if pkey == nil {
		return opensslKey{}, opensslError("load RSA private key", code)
	}
	md := C.wx_sha256(&code)
	if md == nil {
		C.EVP_PKEY_free(pkey)
		return opensslKey{}, opensslError("fetch SHA2-256", code)
	}
	return opensslKey{pkey: pkey, md: md, size: int(C.EVP_PKEY_get_size(pkey))}, nil
}

func (o *opensslRS256) selfTest(priv *rsa.PrivateKey) error {
	ref, err := newGoRS256(priv)
	if err != nil {
		return err
	}
	want, err := ref.Sign(selfTestInput)
	if err != nil {
		return err
	}
	got, err := o.Sign(selfTestInput)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("keys: openssl: self-test signature differs from crypto/rsa's")
	}
	return nil
}

func (o *opensslRS256) Sign(signingInput []byte) ([]byte, error) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	k := o.key
	if k.pkey == nil {
		return nil, ErrSignerClosed
	}
	sig := make([]byte, k.size)
	sigLen := C.size_t(len(sig))
	var in *C.uchar
	if len(signingInput) > 0 {
		in = (*C.uchar)(unsafe.Pointer(&signingInput[0]))
	}
	var code C.ulong
	if C.wx_sign(k.pkey, k.md, in, C.size_t(len(signingInput)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), &sigLen, &code) != 1 {
		return nil, opensslError("sign", code)
	}
	return sig[:sigLen], nil
}

func (o *opensslRS256) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.key.pkey == nil {
		return
	}
	o.cleanup.Stop()
	o.key.free()
	o.key = opensslKey{}
}

func opensslError(op string, code C.ulong) error {
	if code == 0 {
		return fmt.Errorf("keys: openssl: %s failed", op)
	}
	var buf [256]C.char
	C.ERR_error_string_n(code, &buf[0], C.size_t(len(buf)))
	return fmt.Errorf("keys: openssl: %s: %s", op, C.GoString(&buf[0]))
}
