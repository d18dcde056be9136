package pgcluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wxidp/wxidp/internal/pgcluster"
)

// TestCluster walks a cluster through every state the fault tests use and
// checks what a client sees in each.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := pgcluster.New(t)
	if c.Port() == 5432 {
		t.Fatal("the test cluster took the shared server's port")
	}
	ping := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.DSN())
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return conn.Ping(ctx)
	}
	if err := ping(10 * time.Second); err != nil {
		t.Fatalf("fresh cluster: %v", err)
	}

	// A connection opened before the hang stays open and goes unanswered.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	c.Hang()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = conn.Exec(short, "SELECT 1")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("query on a hung cluster: %v, want a deadline error", err)
	}
	if err := ping(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("new connection to a hung cluster: %v, want a deadline error", err)
	}
	c.Resume()
	if err := ping(10 * time.Second); err != nil {
		t.Fatalf("resumed cluster: %v", err)
	}

	c.Stop()
	if err := ping(2 * time.Second); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stopped cluster: %v, want connection refused", err)
	}
	c.Start()
	if err := ping(10 * time.Second); err != nil {
		t.Fatalf("restarted cluster: %v", err)
	}
	// Cleanup must cope with a hung cluster.
	c.Hang()
}
