// Command example-resource-server is what a third-party Go service needs to
// accept wxidp access tokens offline: it verifies them against wxidp's JWKS
// with github.com/coreos/go-oidc (which caches the keys and refetches on an
// unknown kid) and checks the RFC 9068 header and claims.
//
//	example-resource-server -issuer http://127.0.0.1:4444 -audience https://api.example.com
//	curl -H "Authorization: Bearer $AT" http://127.0.0.1:8080/hello
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

func main() {
	issuer := flag.String("issuer", "http://127.0.0.1:4444", "wxidp issuer URL")
	jwksURL := flag.String("jwks-url", "", "JWKS URL (default: issuer + /.well-known/jwks.json)")
	audience := flag.String("audience", "", "this API's audience; tokens must name it in aud")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	scope := flag.String("scope", "", "a scope /hello requires (none when empty)")
	flag.Parse()
	if *audience == "" {
		log.Fatal("-audience is required")
	}
	if *jwksURL == "" {
		*jwksURL = strings.TrimRight(*issuer, "/") + "/.well-known/jwks.json"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: *addr, Handler: newHandler(ctx, *issuer, *jwksURL, *audience, *scope), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	log.Printf("listening on %s", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// newHandler serves GET /hello to callers with a valid access token
// granted scope (if any).
func newHandler(ctx context.Context, issuer, jwksURL, audience, scope string) http.Handler {
	keys := oidc.NewRemoteKeySet(ctx, jwksURL)
	verifier := oidc.NewVerifier(issuer, keys, &oidc.Config{ClientID: audience, SupportedSigningAlgs: []string{oidc.RS256}})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			unauthorized(w, "missing bearer token")
			return
		}
		claims, err := verify(r.Context(), verifier, raw)
		if err != nil {
			unauthorized(w, err.Error())
			return
		}
		if scope != "" && !slices.Contains(strings.Fields(claims.Scope), scope) {
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+scope+`"`)
			http.Error(w, "insufficient scope", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"hello": claims.Subject, "scope": claims.Scope, "client_id": claims.ClientID})
	})
	return mux
}

type accessClaims struct {
	Subject  string `json:"sub"`
	Scope    string `json:"scope"`
	ClientID string `json:"client_id"`
}

// verify checks signature, iss, aud and exp (go-oidc), then that the token
// is an access token (typ at+jwt, RFC 9068 §4) and not, say, an ID token.
func verify(ctx context.Context, v *oidc.IDTokenVerifier, raw string) (*accessClaims, error) {
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, err
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders["typ"].(string); !strings.EqualFold(typ, "at+jwt") {
		return nil, fmt.Errorf("not an access token (typ %q)", typ)
	}
	var c accessClaims
	if err := tok.Claims(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

func unauthorized(w http.ResponseWriter, reason string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	http.Error(w, reason, http.StatusUnauthorized)
}
