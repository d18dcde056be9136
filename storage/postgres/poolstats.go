package postgres

import "time"

// PoolStats is a snapshot of the connection pool, for metrics. It is a plain
// struct so that callers need not import pgx.
type PoolStats struct {
	AcquiredConns int32 // in use now
	IdleConns     int32 // open and idle now
	TotalConns    int32 // open now, in use, idle or being opened
	MaxConns      int32
	// Cumulative since the pool opened:
	AcquireCount         int64         // successful acquisitions
	AcquireDuration      time.Duration // total time spent acquiring
	EmptyAcquireCount    int64         // acquisitions that had to wait or open a connection
	CanceledAcquireCount int64         // acquisitions given up (deadline or cancellation)
}

// PoolStats reads the pool's counters; it takes no connection and is cheap.
func (s *Store) PoolStats() PoolStats {
	st := s.pool.Stat()
	return PoolStats{
		AcquiredConns:        st.AcquiredConns(),
		IdleConns:            st.IdleConns(),
		TotalConns:           st.TotalConns(),
		MaxConns:             st.MaxConns(),
		AcquireCount:         st.AcquireCount(),
		AcquireDuration:      st.AcquireDuration(),
		EmptyAcquireCount:    st.EmptyAcquireCount(),
		CanceledAcquireCount: st.CanceledAcquireCount(),
	}
}
