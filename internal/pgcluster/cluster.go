package pgcluster

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DirPrefix starts the name of every cluster's directory under os.TempDir().
const DirPrefix = "wxidp-pgcluster-"

// DebianPackage provides initdb, pg_ctl and postgres on Debian and Ubuntu.
const DebianPackage = "postgresql"

const (
	// pgctlWait bounds pg_ctl's own waiting for start-up and shut-down; a
	// start after an immediate stop replays the WAL first.
	pgctlWait = 30 * time.Second
	// signalWait bounds waiting for a signalled process to change state.
	signalWait = 5 * time.Second
)

// Cluster is one running (or deliberately stopped or hung) PostgreSQL
// cluster. Its methods fail the test they were created with, so call them
// from that test's goroutine.
type Cluster struct {
	t    testing.TB
	bin  string // directory holding initdb, pg_ctl and postgres
	dir  string // owned by the cluster's user: data/, server.log, the socket
	port int
	// cred runs the PostgreSQL programs as another user; nil when the test
	// does not run as root.
	cred *syscall.Credential
	// stopped lists the processes Hang stopped, for Resume.
	stopped []int
}

// New initialises a cluster with trust authentication for the user
// "postgres" and starts it on a free loopback port. Cleanup stops it and
// removes its files.
func New(t testing.TB) *Cluster {
	t.Helper()
	bin, err := findBin()
	if err != nil {
		t.Fatalf("pgcluster: %v\nInstall the PostgreSQL server binaries (apt-get install %s) or put their directory on PATH.", err, DebianPackage)
	}
	c := &Cluster{t: t, bin: bin}
	if os.Geteuid() == 0 {
		if c.cred, err = credentialOf("postgres"); err != nil {
			t.Fatalf("pgcluster: PostgreSQL refuses to run as root and there is no user to run it as: %v\n"+
				"The %s package creates the postgres user.", err, DebianPackage)
		}
	}
	if c.dir, err = os.MkdirTemp("", DirPrefix); err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	t.Cleanup(c.cleanup)
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			t.Fatalf("pgcluster: %v", err)
		}
	}
	if out, err := c.run("initdb", "-D", c.dataDir(), "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--no-locale", "--no-sync"); err != nil {
		t.Fatalf("pgcluster: initdb in %s: %v\n%s", c.dir, err, out)
	}
	// A port found free may be taken before PostgreSQL binds it; another
	// one will do.
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			t.Fatalf("pgcluster: %v", err)
		}
		if err = c.start(); err == nil || attempt == 2 {
			break
		}
	}
	if err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	return c
}

// DSN connects to the database "postgres" as the superuser "postgres", over
// TCP; it stays the same across Stop and Start.
func (c *Cluster) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Port is the TCP port the cluster listens on.
func (c *Cluster) Port() int { return c.port }

// Stop shuts the cluster down the way a crash would (pg_ctl stop -m
// immediate): connections are cut without a goodbye and the next Start
// replays the WAL.
func (c *Cluster) Stop() {
	c.t.Helper()
	if out, err := c.pgctl("stop", "-m", "immediate"); err != nil {
		c.t.Fatalf("pgcluster: pg_ctl stop: %v\n%s", err, out)
	}
}

// Start starts a stopped cluster again, on the same port, and returns once
// it accepts connections.
func (c *Cluster) Start() {
	c.t.Helper()
	if err := c.start(); err != nil {
		c.t.Fatalf("pgcluster: %v", err)
	}
}

// Hang stops every process of the cluster with SIGSTOP: the postmaster
// first, so it forks no new backend, then all its descendants. Clients'
// TCP connections stay open and their queries go unanswered, as with a
// frozen machine.
func (c *Cluster) Hang() {
	c.t.Helper()
	pid, err := c.postmasterPID()
	if err != nil {
		c.t.Fatalf("pgcluster: hang: %v", err)
	}
	if err := c.stop(pid); err != nil {
		c.t.Fatalf("pgcluster: hang: %v", err)
	}
	// The postmaster is stopped, so the set of descendants only shrinks
	// (a backend may exit before its SIGSTOP lands); walk it until a walk
	// finds nothing new.
	for {
		fresh := 0
		for _, p := range descendants(pid) {
			if slices.Contains(c.stopped, p) {
				continue
			}
			fresh++
			if err := c.stop(p); err != nil && !errors.Is(err, os.ErrProcessDone) {
				c.t.Fatalf("pgcluster: hang: %v", err)
			}
		}
		if fresh == 0 {
			return
		}
	}
}

// Resume continues every process Hang stopped.
func (c *Cluster) Resume() {
	c.t.Helper()
	if err := c.resume(); err != nil {
		c.t.Fatalf("pgcluster: resume: %v", err)
	}
}

func (c *Cluster) resume() error {
	var errs []error
	// Children first: a resumed postmaster could otherwise act on
	// children it finds unresponsive before they run again.
	for i := len(c.stopped) - 1; i >= 0; i-- {
		err := syscall.Kill(c.stopped[i], syscall.SIGCONT)
		if err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("SIGCONT %d: %w", c.stopped[i], err))
		}
	}
	c.stopped = nil
	return errors.Join(errs...)
}

// cleanup never leaves a cluster behind, whatever state the test left it in.
func (c *Cluster) cleanup() {
	if err := c.resume(); err != nil {
		c.t.Errorf("pgcluster: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.dataDir(), "postmaster.pid")); err == nil {
		if out, err := c.pgctl("stop", "-m", "immediate"); err != nil {
			c.t.Errorf("pgcluster: pg_ctl stop: %v\n%s", err, out)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		c.t.Errorf("pgcluster: %v", err)
	}
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }

func (c *Cluster) start() error {
	// The socket lives in the cluster's directory, not /var/run/postgresql,
	// which belongs to the shared server.
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", c.port, c.dir)
	out, err := c.pgctl("start", "-l", filepath.Join(c.dir, "server.log"), "-o", opts)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		return fmt.Errorf("pg_ctl start on port %d: %w\n%s\nserver.log:\n%s", c.port, err, out, tail(log, 2000))
	}
	return nil
}

func (c *Cluster) pgctl(action string, args ...string) ([]byte, error) {
	return c.run("pg_ctl", append([]string{action, "-D", c.dataDir(), "-w", "-t", strconv.Itoa(int(pgctlWait.Seconds()))}, args...)...)
}

// run runs one of the server programs as the cluster's user, in its
// directory, with an environment free of PG* variables meant for the
// shared server.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "HOME=" + c.dir}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// pg_ctl points the postmaster's output at server.log; should some
	// version leave it our pipe, Wait returns instead of waiting for the
	// postmaster to exit.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

func (c *Cluster) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("is the cluster running? %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(first))
}

// stop sends SIGSTOP to pid and waits until it is stopped, so that a
// postmaster cannot fork once stop returns.
func (c *Cluster) stop(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return fmt.Errorf("SIGSTOP %d: %w", pid, err)
	}
	c.stopped = append(c.stopped, pid)
	deadline := time.Now().Add(signalWait)
	for {
		st, err := readStat(pid)
		if err != nil {
			return os.ErrProcessDone // it exited; nothing to stop
		}
		switch st.state {
		case 'T', 't':
			return nil
		case 'Z', 'X': // exited, not yet reaped by its stopped parent
			return os.ErrProcessDone
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop within %v (state %c)", pid, signalWait, st.state)
		}
		time.Sleep(time.Millisecond)
	}
}

type procStat struct {
	state byte
	ppid  int
}

// readStat parses /proc/PID/stat: "pid (comm) state ppid ...", where comm
// may itself hold spaces and parentheses.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 2 || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return procStat{state: fields[0][0], ppid: ppid}, nil
}

// descendants lists the live descendants of root, parents before children.
func descendants(root int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	var out []int
	queue := children[root]
	for len(queue) > 0 {
		p := queue[0]
		queue = append(queue[1:], children[p]...)
		out = append(out, p)
	}
	return out
}

// findBin returns the directory holding initdb, pg_ctl and postgres: the
// one on PATH, else the newest /usr/lib/postgresql/<version>/bin.
func findBin() (string, error) {
	var dirs []string
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versions, func(a, b string) int { return versionOf(b) - versionOf(a) })
	dirs = append(dirs, versions...)
	for _, d := range dirs {
		if hasAll(d, "initdb", "pg_ctl", "postgres") {
			return d, nil
		}
	}
	return "", errors.New("no initdb, pg_ctl and postgres on PATH or in /usr/lib/postgresql/*/bin")
}

// versionOf reads the major version out of /usr/lib/postgresql/16/bin.
func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func hasAll(dir string, names ...string) bool {
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

func credentialOf(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
