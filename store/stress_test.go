package store

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-persist/persist/subjects"
)

// TestStream_StressTimerAndClose runs writers with short TTLs, config
// changes and reads against the background sweep and archive timer, closes
// the stream while the timer is busy, and checks that the events came
// gap-free in revision order, that every set event has a higher seq than
// the one before, and that Close waited for the timer.
func TestStream_StressTimerAndClose(t *testing.T) {
	dir := t.TempDir()
	for round := range 2 {
		var mu sync.Mutex
		var evs []Event
		cfg := subjects.DefaultConfig()
		cfg.AllowMsgTTL = true
		cfg.DuplicateWindow = 5
		s, err := Open(filepath.Join(dir, "s.db"), Options{
			Create:          true,
			Config:          &cfg,
			ArchivePath:     filepath.Join(dir, "archive", "s.db"),
			ArchiveInterval: 3 * time.Millisecond,
			Notify: func(e []Event) {
				mu.Lock()
				evs = append(evs, e...)
				mu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					ws := []Write{
						{Data: []byte("x"), TTL: time.Duration(1+i%3) * time.Millisecond},
						{Data: []byte("y"), Key: "k", MsgID: string(rune('a' + i%5))},
					}
					if _, err := s.Append(ws); err != nil {
						t.Error(err)
						return
					}
					switch w {
					case 0:
						c := s.Config()
						c.MaxMsgs = int64(3 + i%7)
						if _, err := s.SetConfig(c); err != nil {
							t.Error(err)
							return
						}
					case 1:
						if _, err := s.DeleteThrough(uint64(i)); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		time.Sleep(2 * time.Millisecond) // let the timer be due while closing
		var err2 error
		if round%2 == 0 {
			err2 = s.Close()
		} else {
			err2 = s.Destroy()
		}
		if err2 != nil {
			t.Fatal(err2)
		}
		mu.Lock()
		n := len(evs)
		var rev, seq uint64
		for _, e := range evs {
			if e.Revision != rev+1 {
				t.Fatalf("round %d: event %s revision %d after %d", round, e.Op, e.Revision, rev)
			}
			rev = e.Revision
			if e.Op == subjects.OpSet {
				if e.Msg.Seq <= seq {
					t.Fatalf("round %d: set seq %d after %d", round, e.Msg.Seq, seq)
				}
				seq = e.Msg.Seq
			}
		}
		mu.Unlock()
		// Nothing is published after Close or Destroy returned.
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		if len(evs) != n {
			t.Fatalf("round %d: %d events after close", round, len(evs)-n)
		}
		mu.Unlock()
		if round%2 == 1 {
			continue
		}
		if err := Remove(filepath.Join(dir, "s.db")); err != nil {
			t.Fatal(err)
		}
		if err := Remove(filepath.Join(dir, "archive", "s.db")); err != nil {
			t.Fatal(err)
		}
	}
}
