package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"
)

// Output formats of `wxidp users`.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// usersCLI is the state shared by the `users` subcommands.
type usersCLI struct {
	ac     *adminClient
	output string
}

// usersFind are the filters and paging of `users find`, sent to
// GET /admin/users as given: the API checks them and its 400 says what is
// wrong.
type usersFind struct {
	openid, appid, unionid, phone, clientID string
	createdAfter, createdBefore, cursor     string
	limit                                   int
	all                                     bool
}

func newUsersCmd() *cobra.Command {
	u := &usersCLI{ac: &adminClient{http: &http.Client{Timeout: 30 * time.Second, Transport: cliAgent{http.DefaultTransport}}}}
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Find, show, disable, enable or delete users through the admin API",
		Long: `Find, show, disable, enable or delete users through the admin API
(/admin/users).

Output is a table when standard output is a terminal and the API's JSON,
indented, otherwise; -o table|json chooses. Disabling a user deletes their
tokens and refuses their logins until they are enabled again; deleting
erases the user, their WeChat identities and tokens, and cannot be undone.

The admin API location and token may come from WXIDP_ADMIN_ENDPOINT and
WXIDP_ADMIN_TOKEN.`,
	}
	u.ac.flags(cmd)
	cmd.PersistentFlags().StringVarP(&u.output, "output", "o", "", "output format: table or json (default: table on a terminal, json otherwise)")
	// How one invocation prints, not a setting of the server: no
	// environment variable.
	_ = cmd.PersistentFlags().SetAnnotation("output", argumentAnnotation, []string{"true"})

	var f usersFind
	find := &cobra.Command{
		Use:   "find",
		Short: "List users, newest first, matching every filter given",
		Long: `List users, newest first, matching every filter given. --appid narrows
--openid to one mini-program; --created-after and --created-before take
RFC 3339 times. One page (--limit, at most 1000; the server's default is 100)
is printed, and the cursor of the next one, if any, goes to standard error;
--all follows the cursors and prints every match.`,
		Example: `  wxidp users find --phone 13800138000
  wxidp users find --openid o6_bmjrPTlm6_2sgVt7hMZOPfL2M --appid wx1234567890
  wxidp users find --client-id billing --created-after 2024-05-01T00:00:00Z --all -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return u.find(cmd, &f) },
	}
	fs := find.Flags()
	fs.StringVar(&f.openid, "openid", "", "only users with an identity of this WeChat openid")
	fs.StringVar(&f.appid, "appid", "", "with --openid: the mini-program the openid belongs to")
	fs.StringVar(&f.unionid, "unionid", "", "only users with an identity of this WeChat unionid")
	fs.StringVar(&f.phone, "phone", "", "only users with this phone number")
	fs.StringVar(&f.clientID, "client-id", "", "only users who signed in through this client (its mini-program, or a token it still holds)")
	fs.StringVar(&f.createdAfter, "created-after", "", "only users created at or after this time (RFC 3339)")
	fs.StringVar(&f.createdBefore, "created-before", "", "only users created before this time (RFC 3339)")
	fs.IntVar(&f.limit, "limit", 0, "users per page, 1 to 1000 (default: the server's, 100)")
	fs.StringVar(&f.cursor, "cursor", "", "start after this cursor (a next_cursor printed before)")
	fs.BoolVar(&f.all, "all", false, "follow next_cursor until every matching user is printed")
	markArguments(fs)

	var yes bool
	del := &cobra.Command{
		Use:   "delete SUB",
		Short: "Erase a user: profile, WeChat identities and tokens (cannot be undone)",
		Long: `Erase a user: profile, WeChat identities and tokens. This cannot be undone.
Without --yes the subject must be typed again at the terminal; when standard
input is not a terminal, --yes is required.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return u.delete(cmd, args[0], yes) },
	}
	del.Flags().BoolVarP(&yes, "yes", "y", false, "delete without asking for confirmation")
	markArguments(del.Flags())

	cmd.AddCommand(find,
		&cobra.Command{
			Use: "get SUB", Short: "Show a user with their WeChat identities and refresh token chains", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error { return u.get(cmd, args[0]) },
		},
		&cobra.Command{
			Use: "disable SUB", Short: "Disable a user: their tokens are deleted and their logins refused", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error { return u.setDisabled(cmd, args[0], "disable") },
		},
		&cobra.Command{
			Use: "enable SUB", Short: "Enable a disabled user: they may log in again", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error { return u.setDisabled(cmd, args[0], "enable") },
		},
		del,
	)
	return cmd
}

// apiUser is a user as the admin API returns it.
type apiUser struct {
	Sub              string `json:"sub"`
	PhoneNumber      string `json:"phone_number"`
	Nickname         string `json:"nickname"`
	Picture          string `json:"picture"`
	ProfileUpdatedAt string `json:"profile_updated_at"`
	Disabled         bool   `json:"disabled"`
	DisabledAt       string `json:"disabled_at"`
	CreatedAt        string `json:"created_at"`
	UpdatedAt        string `json:"updated_at"`
}

// apiUserDetails is the answer of GET /admin/users/{sub}.
type apiUserDetails struct {
	apiUser
	Identities []struct {
		AppID       string `json:"appid"`
		OpenID      string `json:"openid"`
		UnionID     string `json:"unionid"`
		CreatedAt   string `json:"created_at"`
		LastLoginAt string `json:"last_login_at"`
	} `json:"identities"`
	LastLoginAt string `json:"last_login_at"`
	Chains      []struct {
		ChainID   string `json:"chain_id"`
		ClientID  string `json:"client_id"`
		Scope     string `json:"scope"`
		IssuedAt  string `json:"issued_at"`
		ExpiresAt string `json:"expires_at"`
	} `json:"refresh_token_chains"`
}

func userPath(sub string) (string, error) {
	if sub == "" {
		return "", errors.New("the subject (SUB) is empty")
	}
	return "/admin/users/" + url.PathEscape(sub), nil
}

// format returns the output format: --output, or table when standard
// output is a terminal and JSON otherwise.
func (u *usersCLI) format(cmd *cobra.Command) (string, error) {
	switch u.output {
	case outputTable, outputJSON:
		return u.output, nil
	case "":
		if isTerminal(cmd.OutOrStdout()) {
			return outputTable, nil
		}
		return outputJSON, nil
	}
	return "", fmt.Errorf("--output must be %s or %s, not %q", outputTable, outputJSON, u.output)
}

// call sends one request through the clients plumbing (ac.do: the token,
// the API's error as the error) and returns the answer's JSON, indented.
func (u *usersCLI) call(ctx context.Context, method, path string) ([]byte, error) {
	var raw bytes.Buffer
	err := u.ac.do(ctx, method, path, nil, &raw)
	return raw.Bytes(), err
}

func (u *usersCLI) find(cmd *cobra.Command, f *usersFind) error {
	format, err := u.format(cmd)
	if err != nil {
		return err
	}
	q := url.Values{}
	fs := cmd.Flags()
	for _, p := range []struct{ flag, param, v string }{
		{"openid", "openid", f.openid}, {"appid", "appid", f.appid}, {"unionid", "unionid", f.unionid},
		{"phone", "phone", f.phone}, {"client-id", "client_id", f.clientID},
		{"created-after", "created_after", f.createdAfter}, {"created-before", "created_before", f.createdBefore},
		{"cursor", "cursor", f.cursor},
	} {
		if fs.Changed(p.flag) {
			q.Set(p.param, p.v)
		}
	}
	if fs.Changed("limit") {
		q.Set("limit", strconv.Itoa(f.limit))
	} else if f.all {
		q.Set("limit", "1000") // the API's largest page: fewest round trips
	}
	var users []json.RawMessage
	for {
		raw, err := u.call(cmd.Context(), http.MethodGet, "/admin/users?"+q.Encode())
		if err != nil {
			return err
		}
		var page struct {
			Users      []json.RawMessage `json:"users"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("decode users: %w", err)
		}
		if !f.all {
			if format == outputJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			if err := printUserRows(cmd.OutOrStdout(), page.Users); err != nil {
				return err
			}
			if page.NextCursor != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "more users match: --cursor %s (or --all)\n", page.NextCursor)
			}
			return nil
		}
		users = append(users, page.Users...)
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	if format == outputJSON {
		if users == nil {
			users = []json.RawMessage{}
		}
		return writeJSON(cmd.OutOrStdout(), map[string]any{"users": users})
	}
	return printUserRows(cmd.OutOrStdout(), users)
}

func (u *usersCLI) get(cmd *cobra.Command, sub string) error {
	var d apiUserDetails
	return u.one(cmd, http.MethodGet, sub, "", &d, func() error { return printUserDetails(cmd.OutOrStdout(), &d) })
}

// setDisabled runs `users disable` and `users enable` (action).
func (u *usersCLI) setDisabled(cmd *cobra.Command, sub, action string) error {
	var user apiUser
	return u.one(cmd, http.MethodPost, sub, "/"+action, &user, func() error {
		tw := newTable(cmd.OutOrStdout())
		printUserBlock(tw, &user)
		return tw.Flush()
	})
}

// one calls the admin API about one user (its path plus suffix) and prints
// the answer: as it came in JSON, or decoded into v and shown by table.
func (u *usersCLI) one(cmd *cobra.Command, method, sub, suffix string, v any, table func() error) error {
	format, err := u.format(cmd)
	if err != nil {
		return err
	}
	path, err := userPath(sub)
	if err != nil {
		return err
	}
	raw, err := u.call(cmd.Context(), method, path+suffix)
	if err != nil {
		return err
	}
	if format == outputJSON {
		_, err := cmd.OutOrStdout().Write(raw)
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode user: %w", err)
	}
	return table()
}

func (u *usersCLI) delete(cmd *cobra.Command, sub string, yes bool) error {
	format, err := u.format(cmd)
	if err != nil {
		return err
	}
	path, err := userPath(sub)
	if err != nil {
		return err
	}
	if !yes {
		if err := confirmDelete(cmd.InOrStdin(), cmd.ErrOrStderr(), sub, isTerminal(cmd.InOrStdin())); err != nil {
			return err
		}
	}
	if _, err := u.call(cmd.Context(), http.MethodDelete, path); err != nil {
		return err
	}
	if format == outputJSON {
		return writeJSON(cmd.OutOrStdout(), map[string]string{"deleted": sub})
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", cell(sub))
	return err
}

// confirmDelete asks for the subject to be typed again; a non-interactive
// standard input is refused rather than read, so a script must say --yes.
func confirmDelete(in io.Reader, prompt io.Writer, sub string, interactive bool) error {
	if !interactive {
		return fmt.Errorf("refusing to delete user %s without confirmation: standard input is not a terminal; add --yes to delete without asking", cell(sub))
	}
	fmt.Fprintf(prompt, "Deleting user %s erases their profile, WeChat identities and tokens; this cannot be undone.\nType the subject to confirm: ", cell(sub))
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && (!errors.Is(err, io.EOF) || line == "") {
		return fmt.Errorf("no confirmation read; nothing was deleted")
	}
	if strings.TrimSpace(line) != sub {
		return fmt.Errorf("the subject typed does not match %s; nothing was deleted", cell(sub))
	}
	return nil
}

// isTerminal reports whether v is a terminal (a character device other
// than /dev/null).
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}

func writeJSON(out io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = out.Write(append(b, '\n'))
	return err
}

func newTable(out io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(out, 0, 0, 2, ' ', 0) }

// cell makes a value safe for one table cell: "-" when empty, quoted when
// it holds a tab, a newline or another control character (a nickname is
// the user's own text and must not reach the terminal raw).
func cell(v string) string {
	if v == "" {
		return "-"
	}
	if strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' }) {
		return strconv.Quote(v)
	}
	return v
}

func row(tw io.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

// when shortens an API time to the second for a table; JSON keeps it whole.
func when(v string) string {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return v
	}
	return t.UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// printUserRows prints find's table: one user a row.
func printUserRows(out io.Writer, users []json.RawMessage) error {
	tw := newTable(out)
	fmt.Fprintln(tw, "SUB\tCREATED\tDISABLED\tPHONE\tNICKNAME")
	for _, raw := range users {
		var u apiUser
		if err := json.Unmarshal(raw, &u); err != nil {
			return fmt.Errorf("decode user: %w", err)
		}
		row(tw, u.Sub, when(u.CreatedAt), yesNo(u.Disabled), u.PhoneNumber, u.Nickname)
	}
	return tw.Flush()
}

// printUserBlock writes the user's fields as key/value lines.
func printUserBlock(tw io.Writer, u *apiUser) {
	disabled := yesNo(u.Disabled)
	if u.Disabled && u.DisabledAt != "" {
		disabled += " (since " + when(u.DisabledAt) + ")"
	}
	for _, kv := range [][2]string{
		{"sub", u.Sub}, {"phone_number", u.PhoneNumber}, {"nickname", u.Nickname}, {"picture", u.Picture},
		{"profile_updated_at", when(u.ProfileUpdatedAt)}, {"disabled", disabled},
		{"created_at", when(u.CreatedAt)}, {"updated_at", when(u.UpdatedAt)},
	} {
		row(tw, kv[0]+":", kv[1])
	}
}

// printUserDetails prints get's answer: the user, then the identities and
// refresh token chains tables.
func printUserDetails(out io.Writer, d *apiUserDetails) error {
	tw := newTable(out)
	printUserBlock(tw, &d.apiUser)
	row(tw, "last_login_at:", when(d.LastLoginAt))
	if err := tw.Flush(); err != nil {
		return err
	}
	ids := make([][]string, 0, len(d.Identities))
	for _, id := range d.Identities {
		ids = append(ids, []string{id.AppID, id.OpenID, id.UnionID, when(id.CreatedAt), when(id.LastLoginAt)})
	}
	if err := printSection(out, "IDENTITIES", "APPID\tOPENID\tUNIONID\tCREATED\tLAST LOGIN", ids); err != nil {
		return err
	}
	chains := make([][]string, 0, len(d.Chains))
	for _, ch := range d.Chains {
		chains = append(chains, []string{ch.ChainID, ch.ClientID, ch.Scope, when(ch.IssuedAt), when(ch.ExpiresAt)})
	}
	return printSection(out, "REFRESH TOKEN CHAINS", "CHAIN\tCLIENT\tSCOPE\tISSUED\tEXPIRES", chains)
}

// printSection prints a titled table with its count; no header when empty.
func printSection(out io.Writer, title, header string, rows [][]string) error {
	fmt.Fprintf(out, "\n%s (%d)\n", title, len(rows))
	if len(rows) == 0 {
		return nil
	}
	tw := newTable(out)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		row(tw, r...)
	}
	return tw.Flush()
}
