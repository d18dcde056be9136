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
