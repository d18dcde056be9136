package postgres

import (
	"context"
	"time"

	"github.com/ory/fosite"
)

// ClientAssertionJWTValid returns fosite.ErrJTIKnown if jti was seen and has
// not expired yet.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	var known bool
	err := s.db(ctx).QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM client_assertion_jtis WHERE jti = $1 AND expires_at > $2)`,
		jti, time.Now()).Scan(&known)
	if err != nil {
		return fositeErr("check jti", err)
	}
	if known {
		return fosite.ErrJTIKnown
	}
	return nil
}

// setJTI records a jti and drops expired ones in one round trip. A known jti
// that has expired is taken over (ON CONFLICT ... WHERE expired) rather than
// deleted first: in one statement the insert still sees the row the CTE
// deletes. The CTE skips $1 for the same reason, as one statement must not
// touch a row twice. A known, unexpired jti matches nothing: zero rows.
const setJTI = `WITH expired AS (
		DELETE FROM client_assertion_jtis WHERE expires_at <= $3 AND jti <> $1
	)
	INSERT INTO client_assertion_jtis (jti, expires_at) VALUES ($1, $2)
	ON CONFLICT (jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
	WHERE client_assertion_jtis.expires_at <= $3`

// SetClientAssertionJWT records jti until exp, dropping expired jtis, and
// returns fosite.ErrJTIKnown if jti is known and unexpired. Concurrent calls
// with one jti serialize on its primary key: exactly one succeeds.
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	tag, err := s.db(ctx).Exec(ctx, setJTI, jti, exp, time.Now())
	if err != nil {
		return fositeErr("set jti", err)
	}
	if tag.RowsAffected() == 0 {
		return fosite.ErrJTIKnown
	}
	return nil
}
