package postgres

// PurgeStatements exposes the janitor's statements, by table, so the
// external tests can check their plans.
func PurgeStatements() map[string]string {
	m := make(map[string]string, len(purgeStatements))
	for _, p := range purgeStatements {
		m[p.table] = p.sql
	}
	return m
}

// ResealPageStatements exposes, by table, the statement reading a page of
// sealed values after a key, and how many key parameters it takes.
func ResealPageStatements() map[string]struct {
	SQL  string
	NKey int
} {
	m := map[string]struct {
		SQL  string
		NKey int
	}{}
	for _, c := range sealedColumns {
		m[c.table] = struct {
			SQL  string
			NKey int
		}{c.after, c.nKey}
	}
	return m
}

// HeaderStatements exposes, by table, the statement listing the distinct
// headers of its sealed column.
func HeaderStatements() map[string]string {
	m := map[string]string{}
	for _, c := range sealedColumns {
		m[c.table] = c.headers
	}
	return m
}
