package postgrestest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/migrations"
)

// TemplatePrefix starts the name of the migrated template databases NewStore
// copies. Each is named by a hash of the migration files, so an edited or
// added migration gets a template of its own; old ones are left behind
// (a few MB each) and can be dropped when no test is running.
const TemplatePrefix = "wxidp_tpl_"

// templateLockKey serializes template creation across test processes on one
// server (`go test ./...` runs one process per package).
const templateLockKey int64 = 0x77786964705f7470 // "wxidp_tp"

// Migrating takes as long as creating the database; copying a migrated
// template instead halves the cost of every NewStore.
var template struct {
	once sync.Once
	name string
	err  error
}

func templateName() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS(), path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	return TemplatePrefix + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// migratedTemplate returns the name of a database holding the current schema
// and nothing else, creating it once per server.
func migratedTemplate(server string) (string, error) {
	template.once.Do(func() {
		template.name, template.err = ensureTemplate(server)
	})
	return template.name, template.err
}

func ensureTemplate(server string) (string, error) {
	name, err := templateName()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", &unreachableError{err}
	}
	defer conn.Close(context.Background())
	// Session-level: released when conn closes, even if we fail midway.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, templateLockKey); err != nil {
		return "", err
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	// Built under another name and renamed when complete, so a process
	// killed while migrating never leaves a half-built template in use.
	building := name + "_building"
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{building}.Sanitize()+` WITH (FORCE)`); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{building}.Sanitize()); err != nil {
		return "", err
	}
	dsn, err := withDatabase(server, building)
	if err != nil {
		return "", err
	}
	db, err := migrations.OpenDB(dsn)
	if err != nil {
		return "", err
	}
	err = migrations.Up(ctx, db)
	// Copying needs the template free of connections: close ours first.
	// PostgreSQL waits a few seconds for closing backends to go.
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	_, err = conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{building}.Sanitize()+` RENAME TO `+pgx.Identifier{name}.Sanitize())
	if err != nil {
		return "", err
	}
	return name, nil
}
