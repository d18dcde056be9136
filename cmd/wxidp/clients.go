package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
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
	}
	ac.flags(cmd)

	var md clientFlags
	create := &cobra.Command{
		Use:   "create",
		Short: "Register a client; prints its secret once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]any{}
			md.apply(cmd, body)
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

// clientFlags maps flags to RFC 7591 metadata names.
type clientFlags struct {
	id, name, scope, authMethod, secret, appID, appSecret string
	grants, audience, redirects                           []string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.id, "id", "", "client_id (generated when empty)")
	fs.StringVar(&f.name, "name", "", "client_name")
	fs.StringVar(&f.scope, "scope", "", "space-separated scopes the client may request")
	fs.StringSliceVar(&f.grants, "grant-type", nil, "grant_types (repeatable)")
	fs.StringSliceVar(&f.audience, "audience", nil, "audiences the client may request (repeatable)")
	fs.StringSliceVar(&f.redirects, "redirect-uri", nil, "redirect_uris (repeatable)")
	fs.StringVar(&f.authMethod, "auth-method", "", "token_endpoint_auth_method")
	fs.StringVar(&f.secret, "secret", "", "client_secret to set (>= 32 characters; generated on create when empty)")
	fs.StringVar(&f.appID, "wechat-appid", "", "WeChat appid the client is bound to")
	fs.StringVar(&f.appSecret, "wechat-app-secret", "", "WeChat app secret (write-only)")
	for flag, env := range map[string]string{
		"id": "WXIDP_CLIENT_ID", "name": "WXIDP_CLIENT_NAME", "scope": "WXIDP_CLIENT_SCOPE",
		"grant-type": "WXIDP_CLIENT_GRANT_TYPES", "audience": "WXIDP_CLIENT_AUDIENCE",
		"redirect-uri": "WXIDP_CLIENT_REDIRECT_URIS", "auth-method": "WXIDP_CLIENT_AUTH_METHOD",
		"secret": "WXIDP_CLIENT_SECRET", "wechat-appid": "WXIDP_CLIENT_WECHAT_APPID",
		// An app secret in argv shows in `ps`; the variable keeps it out.
		"wechat-app-secret": "WXIDP_WECHAT_APP_SECRET",
	} {
		bindEnv(fs, flag, env)
	}
}

// apply writes the flags the user set into body.
func (f *clientFlags) apply(cmd *cobra.Command, body map[string]any) {
	set := func(flag, field string, v any) {
		if cmd.Flags().Changed(flag) {
			body[field] = v
		}
	}
	set("id", "client_id", f.id)
	set("name", "client_name", f.name)
	set("scope", "scope", f.scope)
	set("grant-type", "grant_types", f.grants)
	set("audience", "audience", f.audience)
	set("redirect-uri", "redirect_uris", f.redirects)
	set("auth-method", "token_endpoint_auth_method", f.authMethod)
	set("secret", "client_secret", f.secret)
	set("wechat-appid", "wechat_appid", f.appID)
	set("wechat-app-secret", "wechat_app_secret", f.appSecret)
}

// update reads the client, overlays the flags given and PUTs it back, since
// PUT replaces the whole registration.
func (ac *adminClient) update(cmd *cobra.Command, id string, f *clientFlags) error {
	var cur bytes.Buffer
	if err := ac.do(cmd.Context(), http.MethodGet, clientPath(id), nil, &cur); err != nil {
		return err
	}
	var got map[string]any
	if err := json.Unmarshal(cur.Bytes(), &got); err != nil {
		return fmt.Errorf("decode client: %w", err)
	}
	body := map[string]any{}
	for _, k := range []string{"client_name", "grant_types", "scope", "audience", "redirect_uris", "token_endpoint_auth_method", "wechat_appid"} {
		if v, ok := got[k]; ok {
			body[k] = v
		}
	}
	f.apply(cmd, body)
	delete(body, "client_id")
	return ac.do(cmd.Context(), http.MethodPut, clientPath(id), body, cmd.OutOrStdout())
}

// do sends one request and copies the (indented) JSON answer to out; a
// non-2xx answer becomes the error.
func (ac *adminClient) do(ctx context.Context, method, path string, body any, out io.Writer) error {
	if ac.token == "" {
		return fmt.Errorf("the admin token is required: --token or WXIDP_ADMIN_TOKEN")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(ac.endpoint, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+ac.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ac.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(raw, &e)
		return fmt.Errorf("%s %s: %s: %s %s", method, path, resp.Status, e.Error, e.Description)
	}
	if len(raw) == 0 {
		return nil
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, raw, "", "  ") != nil {
		_, err = out.Write(raw)
		return err
	}
	pretty.WriteByte('\n')
	_, err = pretty.WriteTo(out)
	return err
}
