package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// auditFlags are the filters of `wxidp audit`.
type auditFlags struct {
	typ, target, since, until string
	limit                     int
	json                      bool
}

// maxAuditPage is the admin API's largest page.
const maxAuditPage = 1000

// newAuditCmd prints the audit trail through the admin API, like `clients`.
func newAuditCmd() *cobra.Command {
	ac := &adminClient{http: &http.Client{Timeout: 30 * time.Second, Transport: cliAgent{http.DefaultTransport}}}
	var f auditFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Print the audit trail (admin actions and security events), newest first",
		Long: `Print the audit trail through the admin API (GET /admin/audit), newest first,
following its cursors until --limit events are printed or none are left.
--since and --until take an RFC 3339 time or a duration back from now (24h).
Event types and fields: docs/operations.md, "Audit events".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return ac.audit(cmd.Context(), f, time.Now(), cmd.OutOrStdout())
		},
	}
	ac.flags(cmd)
	fs := cmd.Flags()
	fs.StringVar(&f.typ, "type", "", "only events of this type (e.g. client.created, refresh_token.reused)")
	fs.StringVar(&f.target, "target", "", "only events on this target (a client_id, a kid)")
	fs.StringVar(&f.since, "since", "", "only events at or after this time (RFC 3339, or a duration ago such as 24h)")
	fs.StringVar(&f.until, "until", "", "only events before this time (RFC 3339, or a duration ago)")
	fs.IntVar(&f.limit, "limit", 100, "most events to print; 0 prints every match")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per line instead of text")
	markArguments(fs)
	return cmd
}

// auditEvent is an event as GET /admin/audit returns it.
type auditEvent struct {
	ID        int64             `json:"id"`
	Time      string            `json:"time"`
	Type      string            `json:"type"`
	Actor     string            `json:"actor"`
	Source    string            `json:"source"`
	RequestID string            `json:"request_id"`
	Target    string            `json:"target"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details"`
}

func (ac *adminClient) audit(ctx context.Context, f auditFlags, now time.Time, out io.Writer) error {
	if f.limit < 0 {
		return fmt.Errorf("--limit cannot be negative")
	}
	q := url.Values{}
	for _, p := range []struct{ name, v string }{{"type", f.typ}, {"target", f.target}} {
		if p.v != "" {
			q.Set(p.name, p.v)
		}
	}
	for _, p := range []struct{ name, v string }{{"since", f.since}, {"until", f.until}} {
		if p.v == "" {
			continue
		}
		t, err := parseWhen(p.v, now)
		if err != nil {
			return fmt.Errorf("--%s: %w", p.name, err)
		}
		q.Set(p.name, t.Format(time.RFC3339Nano))
	}
	printed := 0
	for {
		page := maxAuditPage
		if f.limit > 0 {
			page = min(page, f.limit-printed)
		}
		q.Set("limit", strconv.Itoa(page))
		var raw bytes.Buffer
		if err := ac.do(ctx, http.MethodGet, "/admin/audit?"+q.Encode(), nil, &raw); err != nil {
			return err
		}
		var resp struct {
			Events     []auditEvent `json:"events"`
			NextCursor string       `json:"next_cursor"`
		}
		if err := json.Unmarshal(raw.Bytes(), &resp); err != nil {
			return fmt.Errorf("decode audit events: %w", err)
		}
		for _, e := range resp.Events {
			if err := printAuditEvent(out, e, f.json); err != nil {
				return err
			}
		}
		printed += len(resp.Events)
		if resp.NextCursor == "" || (f.limit > 0 && printed >= f.limit) {
			return nil
		}
		q.Set("cursor", resp.NextCursor)
	}
}

// parseWhen reads an RFC 3339 time, or a duration meaning that long ago.
func parseWhen(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time or a duration such as 24h, got %q", v)
	}
	return t, nil
}

// printAuditEvent writes one line: the JSON object, or the time, type and
// outcome, then key=value fields (details sorted by key).
func printAuditEvent(out io.Writer, e auditEvent, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	fields := []string{e.Time, e.Type, e.Outcome}
	for _, kv := range [][2]string{{"target", e.Target}, {"actor", e.Actor}, {"source", e.Source}, {"request_id", e.RequestID}} {
		if kv[1] != "" {
			fields = append(fields, kv[0]+"="+quoteIfNeeded(kv[1]))
		}
	}
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fields = append(fields, k+"="+quoteIfNeeded(e.Details[k]))
	}
	_, err := fmt.Fprintln(out, strings.Join(fields, " "))
	return err
}

// quoteIfNeeded leaves plain values bare and quotes any that could blur
// the line (spaces, quotes, =, control characters, nothing at all).
func quoteIfNeeded(v string) string {
	if v == "" || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == '"' || r == '=' || r == 0x7f }) ||
		!strconv.CanBackquote(v) {
		return strconv.Quote(v)
	}
	return v
}
