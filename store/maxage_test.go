package store

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-persist/persist/subjects"
)

// TestStream_MaxAgeReads checks that no read returns a message older than
// max_age, whether or not a sweep has removed it yet: on a stream that
// stays open (the timer is off, as a late timer would leave it) and on the
// first read after a reopen, which used to race the sweep.
func TestStream_MaxAgeReads(t *testing.T) {
	for _, reopen := range []bool{false, true} {
		name := "Open"
		if reopen {
			name = "Reopened"
		}
		t.Run(name, func(t *testing.T) {
			cfg := subjects.DefaultConfig()
			cfg.MaxAge = 2500
			ts := openTest(t, &cfg)
			ts.put(t, keyed("k", "old"))
			ts.clock.Add(1000 * time.Millisecond)
			ts.put(t, keyed("young", "new"))
			if reopen {
				ts.Close()
				ts.Stream = nil
			}
			ts.clock.Add(1501 * time.Millisecond) // seq 1 is 2501 ms old
			if reopen {
				ts.reopen(t)
			}
			if m, err := ts.Get(1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get(1) = %v, %v; want ErrNotFound", m, err)
			}
			if m, err := ts.GetKey("k"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("GetKey(k) = %v, %v; want ErrNotFound", m, err)
			}
			if m, err := ts.Get(2); err != nil || string(m.Data) != "new" {
				t.Fatalf("Get(2) = %v, %v; want the message", m, err)
			}
			var seqs []uint64
			res, err := ts.Read(ReadQuery{MaxMsgs: 1}, func(m *Message) error {
				seqs = append(seqs, m.Seq)
				return nil
			})
			if err != nil || len(seqs) != 1 || seqs[0] != 2 || res.NumPending != 0 {
				t.Fatalf("Read() = %v, %+v, %v; want [2], nothing pending", seqs, res, err)
			}
			keys, more, err := ts.Keys("", 0)
			if err != nil || more || len(keys) != 1 || keys[0] != "young" {
				t.Fatalf("Keys() = %v, %v, %v; want [young]", keys, more, err)
			}
			inv := ts.inventory(t)
			if inv.FirstSeq != 2 || inv.Count != 1 || inv.LastSeq != 2 {
				t.Fatalf("Inventory() = %+v, want first seq 2, count 1, last seq 2", inv)
			}
		})
	}
	t.Run("Boundary", func(t *testing.T) {
		// A message exactly max_age old is still there, as for the sweep.
		cfg := subjects.DefaultConfig()
		cfg.MaxAge = 1000
		ts := openTest(t, &cfg)
		ts.put(t, data("a"))
		ts.clock.Add(time.Second)
		if _, err := ts.Get(1); err != nil {
			t.Fatalf("Get(1) at max_age = %v, want the message", err)
		}
		ts.clock.Add(time.Millisecond)
		if _, err := ts.Get(1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(1) past max_age = %v, want ErrNotFound", err)
		}
	})
}
