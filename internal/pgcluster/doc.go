// Package pgcluster runs a throwaway PostgreSQL cluster that belongs to one
// test, so that the test may stop it, hang it and start it again — things no
// test may do to the shared server in WXIDP_TEST_DATABASE_URL (see
// storage/postgres/postgrestest), which every other test is using.
//
//	c := pgcluster.New(t)         // initdb + pg_ctl start on a free port
//	dsn := c.DSN()                // postgres://postgres@127.0.0.1:PORT/postgres
//	c.Stop()                      // pg_ctl stop -m immediate (a crash)
//	c.Start()                     // same directory, same port
//	c.Hang(); c.Resume()          // SIGSTOP / SIGCONT every process of it
//
// The server binaries (initdb, pg_ctl, postgres) come from PATH or from
// /usr/lib/postgresql/<version>/bin, newest version first; without them New
// fails the test naming the Debian package that provides them. It never
// skips. PostgreSQL refuses to run as root, so a test running as root runs
// the cluster as the `postgres` OS user, in a directory under os.TempDir()
// owned by that user (t.TempDir() sits in a directory only root may enter).
//
// The cluster listens on 127.0.0.1 and on a Unix socket in its own directory;
// fsync is off, since nothing of it outlives the test. t.Cleanup resumes a
// hung cluster, stops it and removes its directory. A test process killed
// before its cleanup leaves the cluster running: its directory is named
// DirPrefix + random, so `pgrep -af DirPrefix` finds it.
package pgcluster
