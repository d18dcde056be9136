package migrations_test

import (
	"errors"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/migrations"
	"github.com/wxidp/wxidp/storage"
)

// The header indexes of 00005, by name, with whether each is partial.
var headerIndexes = map[string]bool{
	"wechat_identities_session_key_header": true,
	"clients_wechat_app_secret_header":     true,
	"signing_keys_private_key_header":      false,
	"wechat_tokens_token_header":           true,
}

// 00005 builds its indexes concurrently, outside a transaction, so it must
// survive running again, including over the invalid index a failed
// concurrent build leaves behind; its Down must undo it.
func TestSealedHeadersMigration(t *testing.T) {
	t.Parallel()
	ctx, p, conn, _ := atVersion(t, 4)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// indexes returns whether each header index exists and is valid.
	indexes := func() map[string]bool {
		t.Helper()
		got := map[string]bool{}
		for name, wantPartial := range headerIndexes {
			var valid, partial bool
			err := conn.QueryRow(ctx, `SELECT indisvalid, indpred IS NOT NULL FROM pg_index
				WHERE indexrelid = to_regclass($1)`, name).Scan(&valid, &partial)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			got[name] = valid
			if partial != wantPartial {
				t.Errorf("%s: partial = %v, want %v", name, partial, wantPartial)
			}
		}
		return got
	}
	exec(`INSERT INTO users (id, created_at, updated_at) VALUES ('u', now(), now())`)
	exec(`INSERT INTO wechat_identities (app_id, open_id, user_id, session_key, created_at, updated_at)
		SELECT 'wx', 'o-' || g, 'u', CASE WHEN g % 10 = 0 THEN NULL ELSE '\x0101020304'::bytea || g::text::bytea END, now(), now()
		FROM generate_series(1, 100) g`)
	// What a concurrent build that failed midway leaves: an invalid index
	// under the migration's name (here a unique build failing on the
	// duplicate headers).
	if _, err := conn.Exec(ctx, `CREATE UNIQUE INDEX CONCURRENTLY wechat_identities_session_key_header
		ON wechat_identities (substring(session_key from 1 for 5)) WHERE session_key IS NOT NULL`); err == nil {
		t.Fatal("unique index over duplicate headers built; want it to fail and be left invalid")
	}
	if got := indexes(); len(got) != 1 || got["wechat_identities_session_key_header"] {
		t.Fatalf("before up: indexes (name: valid) = %v, want only an invalid wechat_identities_session_key_header", got)
	}

	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	check := func(when string) {
		t.Helper()
		got := indexes()
		for name := range headerIndexes {
			if !got[name] {
				t.Errorf("%s: %s missing or invalid (found: %v)", when, name, got)
			}
		}
		var unique bool
		if err := conn.QueryRow(ctx, `SELECT indisunique FROM pg_index
			WHERE indexrelid = to_regclass('wechat_identities_session_key_header')`).Scan(&unique); err != nil || unique {
			t.Errorf("%s: wechat_identities_session_key_header unique = %v, %v; want the leftover replaced", when, unique, err)
		}
	}
	check("after up")

	if _, err := p.DownTo(ctx, 4); err != nil {
		t.Fatalf("down: %v", err)
	}
	if got := indexes(); len(got) != 0 {
		t.Errorf("after Down: indexes %v left, want none", got)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	check("after up again")
}

// substringHeader matches a header expression in a migration, capturing its
// column and length.
var substringHeader = regexp.MustCompile(`(?i)substring\(\s*(\w+)\s+from\s+1\s+for\s+(\d+)\s*\)`)

// The migrations write the header length out, as SQL needs; every header
// expression in them must agree with storage.SealedHeaderLen (the length
// keys.Cipher's header is defined as and the queries use), and every kind
// of sealed value must have its header index built by some migration.
func TestHeaderIndexesMatchSealedSpecs(t *testing.T) {
	t.Parallel()
	files, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v %v", files, err)
	}
	var all strings.Builder
	for _, f := range files {
		b, err := fs.ReadFile(migrations.FS(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range substringHeader.FindAllStringSubmatch(string(b), -1) {
			if m[2] != strconv.Itoa(storage.SealedHeaderLen) {
				t.Errorf("%s: %s takes %s bytes, but storage.SealedHeaderLen is %d", f, m[0], m[2], storage.SealedHeaderLen)
			}
		}
		all.Write(b)
	}
	for _, spec := range storage.SealedSpecs() {
		create := regexp.MustCompile(`(?i)CREATE INDEX CONCURRENTLY ` + spec.Table + `_` + spec.Column + `_header\s+ON ` +
			spec.Table + ` \(substring\(` + spec.Column + ` from 1 for \d+\)\)`)
		if !create.MatchString(all.String()) {
			t.Errorf("no migration builds the header index of %s (%s.%s)", spec.Kind, spec.Table, spec.Column)
		}
	}
}
