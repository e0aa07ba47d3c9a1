package store

import (
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// Expiry and archiving run on one timer per stream, armed for the earliest
// thing due (a TTL, the oldest message reaching max_age, the oldest message
// id leaving the duplicate window, the next archive snapshot) and re-armed
// after commits. No goroutine waits per stream: an idle stream costs a timer
// entry, not a stack.

// Sweep removes now what has expired: messages past their TTL (delete event
// reason ttl), messages older than max_age (reason max_age), and message ids
// older than the duplicate window.
func (s *Stream) Sweep() error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	return s.update(func(tx *txn) error { return tx.sweep() })
}

// sweepIfDue sweeps in its own transaction when something has expired.
func (s *Stream) sweepIfDue() error {
	if s.deadline == 0 || s.nowMs() < s.deadline {
		return nil
	}
	return s.update(func(tx *txn) error { return tx.sweep() })
}

// sweepIfDue sweeps within tx when something has expired, so that the
// write that follows sees the stream as readers do.
func (tx *txn) sweepIfDue() error {
	if tx.s.deadline == 0 || tx.now < tx.s.deadline {
		return nil
	}
	return tx.sweep()
}

func (tx *txn) sweep() error {
	tx.swept = true
	var byTTL rangeSet
	err := tx.s.exec("SELECT seq, size, key FROM msgs WHERE expires <= ? ORDER BY seq", func(st *sqlite.Stmt) error {
		byTTL.addRow(uint64(st.ColumnInt64(0)), columnKey(st, 2))
		tx.countBlock(uint64(st.ColumnInt64(0)), -1)
		tx.m.count--
		tx.m.bytes -= st.ColumnInt64(1)
		return nil
	}, tx.now)
	if err != nil {
		return err
	}
	if byTTL.n > 0 {
		if err := tx.s.exec("DELETE FROM msgs WHERE expires <= ?", nil, tx.now); err != nil {
			return err
		}
		tx.emitDelete(subjects.ReasonTTL, &byTTL)
	}
	if tx.cfg.MaxAge > 0 {
		// Times never decrease with seq, so the too-old messages are a
		// prefix.
		cutoff := tx.now - tx.cfg.MaxAge
		var byAge rangeSet
		if err := tx.removeFront(func(r rowInfo) *rangeSet {
			if r.time >= cutoff {
				return nil
			}
			return &byAge
		}); err != nil {
			return err
		}
		tx.emitDelete(subjects.ReasonMaxAge, &byAge)
	}
	return tx.s.exec("DELETE FROM msg_ids WHERE time <= ?", nil, tx.now-tx.cfg.DuplicateWindow)
}

// recomputeDeadline finds the earliest expiry from the data.
func (s *Stream) recomputeDeadline() error {
	var expires, first, firstID *int64
	// One statement for the three candidates: preparing is most of its
	// cost. Open reads the same three in loadQuery.
	err := execOnce(s.conn, `SELECT
		(SELECT min(expires) FROM msgs WHERE expires IS NOT NULL),
		(SELECT time FROM msgs ORDER BY seq LIMIT 1),
		(SELECT min(time) FROM msg_ids)`, func(st *sqlite.Stmt) error {
		expires, first, firstID = columnInt64(st, 0), columnInt64(st, 1), columnInt64(st, 2)
		return nil
	})
	if err != nil {
		return s.dbErr(err)
	}
	s.deadline = deadlineOf(s.cfg, expires, first, firstID)
	return nil
}

// deadlineOf is the earliest expiry (0: none) given the earliest message
// TTL, the time of the oldest message and that of the oldest message id
// (nil: none).
func deadlineOf(cfg Config, expires, first, firstID *int64) int64 {
	var d int64
	lower := func(ms int64) {
		if ms > 0 && (d == 0 || ms < d) {
			d = ms
		}
	}
	if expires != nil {
		lower(*expires)
	}
	if first != nil && cfg.MaxAge > 0 {
		lower(*first + cfg.MaxAge + 1)
	}
	if firstID != nil {
		lower(max(*firstID+cfg.DuplicateWindow, 1))
	}
	return d
}

func (s *Stream) lowerDeadline(ms int64) {
	if ms > 0 && (s.deadline == 0 || ms < s.deadline) {
		s.deadline = ms
	}
}

// arm schedules the timer for the earliest thing due, unless it is already
// scheduled early enough. Called with the lock held.
func (s *Stream) arm() {
	if s.closed {
		return
	}
	var next time.Time
	if !s.opts.NoSweep && s.deadline != 0 {
		next = time.Now().Add(time.Duration(max(s.deadline-s.nowMs(), 0)) * time.Millisecond)
	}
	if s.ckptDue {
		next = time.Now()
	}
	if s.opts.ArchivePath != "" && s.archive.dirty {
		if due := s.archive.last.Add(s.archive.interval); next.IsZero() || due.Before(next) {
			next = due
		}
	}
	if next.IsZero() || !s.timerAt.IsZero() && !s.timerAt.After(next) {
		return
	}
	// Every scheduled call holds one count of s.timers until it ran or was
	// stopped, so that Close can wait for a call in progress.
	if s.timer != nil && s.timer.Stop() {
		s.timers.Done()
	}
	s.timers.Add(1)
	s.timerAt = next
	if s.timer == nil {
		s.timer = time.AfterFunc(time.Until(next), s.fire)
	} else {
		s.timer.Reset(time.Until(next))
	}
}

func (s *Stream) fire() {
	defer s.timers.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timerAt = time.Time{}
	if s.closed {
		return
	}
	if !s.opts.NoSweep {
		if err := s.sweepIfDue(); err != nil {
			s.opts.Logger.Error("store: sweep", "stream", s.path, "err", err)
			s.deadline = s.nowMs() + 1000 // retry, but not in a tight loop
		}
	}
	if s.ckptDue {
		if err := s.checkpoint(false); err != nil {
			s.opts.Logger.Error("store: checkpoint", "stream", s.path, "err", err)
		}
	}
	if s.opts.ArchivePath != "" && s.archive.dirty && time.Since(s.archive.last) >= s.archive.interval {
		// A fence that names another owner refuses the snapshot; it is
		// looked at again an interval later.
		if fenced, err := s.archiveFenced(); err != nil {
			s.opts.Logger.Error("store: archive snapshot", "stream", s.path, "err", err)
		} else if !fenced {
			if err := snapshot(s.conn, s.opts.ArchivePath); err != nil {
				s.opts.Logger.Error("store: archive snapshot", "stream", s.path, "err", err)
			} else {
				s.archive.dirty = false
			}
		}
		s.archive.last = time.Now()
	}
	s.arm()
}

// The WAL is checkpointed by size, never after every commit and never
// inline in a request: SQLite's automatic checkpoint is replaced by a hook
// that counts the WAL's frames (see watchWAL), and once a commit leaves
// checkpointFrames or more, the stream's timer checkpoints soon after, in
// its own goroutine. Close (and Trim) checkpoint only a WAL of
// closeCheckpointFrames or more; a smaller one stays beside the database
// for the next open, which reads it back (at most about 64 KiB of 1 KiB
// pages, one read per frame), so a stream opened, written once and closed
// usually costs no checkpoint and no fsync with sync off. The threshold
// weighs what every open pays for reading the WAL back against the
// fsyncs of a checkpoint: at 256 frames the reading was a fifth of the
// CPU of an open/write/close cycle. Durability does not depend on the
// checkpoint: a commit is in the WAL, and with sync on fsynced, before
// it is acknowledged.
const (
	checkpointFrames      = 1000 // about 1 MiB of WAL
	closeCheckpointFrames = 64
)

// checkpoint copies the WAL into the database. With truncate it also
// truncates the WAL to nothing, so that a closed stream leaves an empty
// -wal and the next open has nothing to read back; otherwise the next
// commit starts the WAL over from its beginning, and truncates it to
// walLimitPragma's size. That pragma is set here, before the connection's
// first such checkpoint, rather than at every open: only a stream that
// reaches checkpointFrames while open needs it. Called with the lock held.
func (s *Stream) checkpoint(truncate bool) error {
	s.ckptDue = false
	mode := "PASSIVE"
	if truncate {
		mode = "TRUNCATE"
	} else if !s.walLimitSet {
		if err := execScript(s.conn, walLimitPragma); err != nil {
			return s.dbErr(err)
		}
		s.walLimitSet = true
	}
	var busy int64
	if err := execOnce(s.conn, "PRAGMA wal_checkpoint("+mode+")", func(st *sqlite.Stmt) error {
		busy = st.ColumnInt64(0)
		return nil
	}); err != nil {
		return s.dbErr(err)
	}
	if busy == 0 {
		s.walFrames = 0
	}
	return nil
}
