package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ory/fosite"

	"github.com/wxidp/wxidp/storage"
)

func TestTranslate(t *testing.T) {
	pgErr := func(code string) error { return fmt.Errorf("exec: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name       string
		err        error
		notFound   error
		want       error
		keepsCause bool
	}{
		{"NoRowsRecord", pgx.ErrNoRows, storage.ErrNotFound, storage.ErrNotFound, false},
		{"NoRowsFosite", fmt.Errorf("scan: %w", pgx.ErrNoRows), fosite.ErrNotFound, fosite.ErrNotFound, false},
		{"Unique", pgErr("23505"), fosite.ErrNotFound, storage.ErrAlreadyExists, true},
		{"Serialization", pgErr("40001"), storage.ErrNotFound, fosite.ErrSerializationFailure, true},
		{"Deadlock", pgErr("40P01"), fosite.ErrNotFound, fosite.ErrSerializationFailure, true},
		{"Other", pgErr("23503"), storage.ErrNotFound, nil, true},
		{"Canceled", fmt.Errorf("query: %w", context.Canceled), storage.ErrNotFound, context.Canceled, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := translate("op", tc.err, tc.notFound)
			if got == nil {
				t.Fatal("translate returned nil")
			}
			if tc.want != nil && !errors.Is(got, tc.want) {
				t.Errorf("translate(%v) = %v, want errors.Is %v", tc.err, got, tc.want)
			}
			var pe *pgconn.PgError
			if tc.keepsCause && errors.As(tc.err, &pe) && !errors.As(got, &pe) {
				t.Errorf("translate(%v) = %v lost the PgError", tc.err, got)
			}
			if errors.Is(got, storage.ErrNotFound) != (tc.want == storage.ErrNotFound) ||
				errors.Is(got, fosite.ErrNotFound) != (tc.want == fosite.ErrNotFound) {
				t.Errorf("translate(%v) = %v: wrong not-found classification", tc.err, got)
			}
		})
	}
	if translate("op", nil, storage.ErrNotFound) != nil {
		t.Error("translate(nil) != nil")
	}
}
