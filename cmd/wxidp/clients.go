package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wxidp/wxidp/storage"
)

// adminClient calls the admin API; the CLI holds no business rules of its
// own, so the API and the CLI cannot disagree.
type adminClient struct {
	endpoint string
	token    string
	http     *http.Client
}

func newClientsCmd() *cobra.Command {
	ac := &adminClient{http: &http.Client{Timeout: 30 * time.Second}}
	cmd := &cobra.Command{
		Use:   "clients",
		Short: "Manage OAuth2 clients through the admin API",
		Long: `Manage OAuth2 clients through the admin API.

Client fields come only from flags, never from environment variables, and
update changes only the fields whose flags are given. Secrets are read from
files so they stay out of shell history and ps: --secret-file FILE and
--wechat-app-secret-file FILE, where FILE - reads standard input, e.g.

  wxidp clients update billing --secret-file - < new-secret.txt

The admin API location and token may come from WXIDP_ADMIN_ENDPOINT and
WXIDP_ADMIN_TOKEN.`,
	}
	ac.flags(cmd)

	var md clientFlags
	create := &cobra.Command{
		Use:   "create",
		Short: "Register a client; prints its secret once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{}
			if err := md.apply(cmd, body); err != nil {
				return err
			}
			return ac.do(cmd.Context(), http.MethodPost, "/admin/clients", body, cmd.OutOrStdout())
		},
	}
	md.register(create)
	var umd clientFlags
	update := &cobra.Command{
		Use:   "update CLIENT_ID",
		Short: "Change a client's metadata; flags not given keep their value",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ac.update(cmd, args[0], &umd)
		},
	}
	umd.register(update)
	cmd.AddCommand(create, update,
		&cobra.Command{
			Use: "list", Short: "List clients", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return ac.do(cmd.Context(), http.MethodGet, "/admin/clients", nil, cmd.OutOrStdout())
			},
		},
		&cobra.Command{
			Use: "get CLIENT_ID", Short: "Show a client", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return ac.do(cmd.Context(), http.MethodGet, clientPath(args[0]), nil, cmd.OutOrStdout())
			},
		},
		&cobra.Command{
			Use: "delete CLIENT_ID", Short: "Delete a client and its tokens", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return ac.do(cmd.Context(), http.MethodDelete, clientPath(args[0]), nil, cmd.OutOrStdout())
			},
		},
	)
	return cmd
}

// flags adds the admin API location and token to cmd and its subcommands.
func (ac *adminClient) flags(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&ac.endpoint, "endpoint", "http://127.0.0.1:4445", "admin API base URL")
	pf.StringVar(&ac.token, "token", "", "admin bearer token")
	bindEnv(pf, "endpoint", "WXIDP_ADMIN_ENDPOINT")
	bindEnv(pf, "token", "WXIDP_ADMIN_TOKEN")
}

func clientPath(id string) string { return "/admin/clients/" + url.PathEscape(id) }

// argumentAnnotation marks the flags that are arguments of one invocation:
// a client's metadata, an audit query. They never take an environment
// variable: a WXIDP_CLIENT_SCOPE left exported in a shell would otherwise
// rewrite every client that shell touches.
const argumentAnnotation = "argument"

// markArguments marks every flag of fs as an argument (argumentAnnotation).
func markArguments(fs *pflag.FlagSet) {
	fs.VisitAll(func(fl *pflag.Flag) {
		_ = fs.SetAnnotation(fl.Name, argumentAnnotation, []string{"true"})
	})
}

// maxSecretFile bounds what --secret-file and --wechat-app-secret-file read.
const maxSecretFile = 4 << 10

// clientFlags maps flags to RFC 7591 metadata names.
type clientFlags struct {
	id, name, scope, authMethod, appID string
	secretFile, appSecretFile          string
	refusedSecret, refusedAppSecret    string
	loginPage                          string
	grants, audience, redirects        []string
	corsOrigins, logoutRedirects       []string
	atTTL, rtTTL, sessionMaxAge        int64
}

func (f *clientFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.id, "id", "", "client_id (generated when empty)")
	fs.StringVar(&f.name, "name", "", "client_name")
	fs.StringVar(&f.scope, "scope", "", "space-separated scopes the client may request")
	fs.StringSliceVar(&f.grants, "grant-type", nil, "grant_types (repeatable)")
	fs.StringSliceVar(&f.audience, "audience", nil, "audiences the client may request (repeatable)")
	// An array, not a slice: a slice flag splits on commas, which a query
	// string may hold, and a redirect URI is stored exactly as given.
	fs.StringArrayVar(&f.redirects, "redirect-uri", nil, "redirect_uris (repeatable; matched exactly)")
	fs.StringArrayVar(&f.logoutRedirects, "post-logout-redirect-uri", nil, "post_logout_redirect_uris: where RP-initiated logout may send the browser back (repeatable; matched exactly)")
	fs.StringArrayVar(&f.corsOrigins, "allowed-cors-origin", nil, "allowed_cors_origins: a browser origin (https://host[:port]) that may call the token, revocation and userinfo endpoints (repeatable)")
	fs.StringVar(&f.authMethod, "auth-method", "", "token_endpoint_auth_method")
	fs.StringVar(&f.secretFile, "secret-file", "", "file holding the client_secret to set (>= 32 characters; - reads standard input; generated on create when not given)")
	fs.StringVar(&f.appID, "wechat-appid", "", "WeChat appid the client is bound to")
	fs.StringVar(&f.loginPage, "wechat-login-page", "", "wechat_login_page: the mini-program page a scan-to-login QR code opens, e.g. pages/scan/index (empty: the app's home page)")
	fs.Int64Var(&f.atTTL, "access-token-ttl-seconds", 0, "access_token_ttl_seconds: the client's access token lifetime, at most the server's (0: the server's)")
	fs.Int64Var(&f.rtTTL, "refresh-token-ttl-seconds", 0, "refresh_token_ttl_seconds: the client's refresh token (idle) lifetime, at most the server's (0: the server's)")
	fs.Int64Var(&f.sessionMaxAge, "session-max-age-seconds", 0, "session_max_age_seconds: how long a login's token chain may live however often refreshed, at most the server's (0: the server's)")
	fs.StringVar(&f.appSecretFile, "wechat-app-secret-file", "", "file holding the WeChat app secret (write-only; - reads standard input)")
	// The old value flags stay, hidden, to explain the change rather than
	// fail with "unknown flag"; a secret in argv leaks to shell history and ps.
	fs.StringVar(&f.refusedSecret, "secret", "", "refused: use --secret-file")
	fs.StringVar(&f.refusedAppSecret, "wechat-app-secret", "", "refused: use --wechat-app-secret-file")
	_ = fs.MarkHidden("secret")
	_ = fs.MarkHidden("wechat-app-secret")
	markArguments(fs)
}

// apply writes the flags the user set into body, reading secrets from their
// files.
func (f *clientFlags) apply(cmd *cobra.Command, body map[string]any) error {
	fs := cmd.Flags()
	for flag, instead := range map[string]string{"secret": "--secret-file", "wechat-app-secret": "--wechat-app-secret-file"} {
		if fs.Changed(flag) {
			return fmt.Errorf("--%s is not accepted, a secret on the command line leaks into shell history and ps: use %s FILE (or - for standard input)", flag, instead)
		}
	}
	if fs.Changed("secret-file") && fs.Changed("wechat-app-secret-file") && f.secretFile == "-" && f.appSecretFile == "-" {
		return fmt.Errorf("--secret-file and --wechat-app-secret-file cannot both read standard input")
	}
	set := func(flag, field string, v any) {
		if fs.Changed(flag) {
			body[field] = v
		}
	}
	set("id", "client_id", f.id)
	set("name", "client_name", f.name)
	set("scope", "scope", f.scope)
	set("grant-type", "grant_types", f.grants)
	set("audience", "audience", f.audience)
	set("redirect-uri", "redirect_uris", f.redirects)
	set("allowed-cors-origin", "allowed_cors_origins", f.corsOrigins)
	set("post-logout-redirect-uri", "post_logout_redirect_uris", f.logoutRedirects)
	set("auth-method", "token_endpoint_auth_method", f.authMethod)
	set("wechat-appid", "wechat_appid", f.appID)
	set("wechat-login-page", "wechat_login_page", f.loginPage)
	set("access-token-ttl-seconds", "access_token_ttl_seconds", f.atTTL)
	set("refresh-token-ttl-seconds", "refresh_token_ttl_seconds", f.rtTTL)
	set("session-max-age-seconds", "session_max_age_seconds", f.sessionMaxAge)
	for flag, field := range map[string]string{"secret-file": "client_secret", "wechat-app-secret-file": "wechat_app_secret"} {
		if !fs.Changed(flag) {
			continue
		}
		path, _ := fs.GetString(flag)
		secret, err := readSecretFile(cmd, flag, path)
		if err != nil {
			return err
		}
		body[field] = secret
	}
	return nil
}

// readSecretFile reads one secret from path, or from standard input for -,
// without its trailing newline. Errors name the flag, never the content.
func readSecretFile(cmd *cobra.Command, flag, path string) (string, error) {
	var r io.Reader
	if path == "-" {
		r = cmd.InOrStdin()
	} else {
		if path == "" {
			return "", fmt.Errorf("--%s needs a file name (or - for standard input)", flag)
		}
		fh, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("--%s: %w", flag, err)
		}
		defer fh.Close()
		r = fh
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	if len(raw) > maxSecretFile {
		return "", fmt.Errorf("--%s: the file is larger than %d bytes; it should hold only the secret", flag, maxSecretFile)
	}
	secret := strings.TrimRight(string(raw), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("--%s: the file is empty", flag)
	}
	return secret, nil
}

// responseOnly are the fields GET returns that a PUT does not take.
var responseOnly = []string{"client_id", "client_secret", "client_id_issued_at", "client_secret_expires_at", "wechat_app_secret_set", "updated_at"}

// update reads the client, overlays the flags given and PUTs it back, since
// PUT replaces the whole registration: every field the user did not name is
// sent back as it was (the secrets, which GET never shows, are kept by the
// server unless new ones are given). The PUT is conditional on the client
// being unchanged since the GET.
func (ac *adminClient) update(cmd *cobra.Command, id string, f *clientFlags) error {
	body := map[string]any{}
	// Read the secret files before the GET: a bad file changes nothing.
	if err := f.apply(cmd, body); err != nil {
		return err
	}
	if _, ok := body["client_id"]; ok {
		return fmt.Errorf("--id cannot be changed by update")
	}
	var cur bytes.Buffer
	etag, err := ac.exchange(cmd.Context(), http.MethodGet, clientPath(id), nil, "", &cur)
	if err != nil {
		return err
	}
	var got map[string]any
	if err := json.Unmarshal(cur.Bytes(), &got); err != nil {
		return fmt.Errorf("decode client: %w", err)
	}
	for k, v := range got {
		if _, given := body[k]; !given && !slices.Contains(responseOnly, k) {
			body[k] = v
		}
	}
	// If-Match makes the PUT fail (412) rather than revert a change someone
	// else made after our GET.
	_, err = ac.exchange(cmd.Context(), http.MethodPut, clientPath(id), body, etag, cmd.OutOrStdout())
	return err
}

// do sends one request and copies the (indented) JSON answer to out; a
// non-2xx answer becomes the error.
func (ac *adminClient) do(ctx context.Context, method, path string, body any, out io.Writer) error {
	_, err := ac.exchange(ctx, method, path, body, "", out)
	return err
}

// exchange is do with an optional If-Match header; it returns the answer's
// ETag, which update sends back so a concurrent change is not overwritten.
func (ac *adminClient) exchange(ctx context.Context, method, path string, body any, ifMatch string, out io.Writer) (string, error) {
	if ac.token == "" {
		return "", fmt.Errorf("the admin token is required: --token or WXIDP_ADMIN_TOKEN")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(ac.endpoint, "/")+path, rd)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+ac.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := ac.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(raw, &e)
		err := fmt.Errorf("%s %s: %s: %s %s", method, path, resp.Status, e.Error, e.Description)
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			// The server's database is unreachable: retry later (exit 75).
			err = fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		case http.StatusPreconditionFailed:
			err = fmt.Errorf("%w; nothing was changed: run the command again to apply it to the current client", err)
		}
		return "", err
	}
	etag := resp.Header.Get("ETag")
	if len(raw) == 0 {
		return etag, nil
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, raw, "", "  ") != nil {
		_, err = out.Write(raw)
		return etag, err
	}
	pretty.WriteByte('\n')
	_, err = pretty.WriteTo(out)
	return etag, err
}
