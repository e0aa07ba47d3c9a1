package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// setMaxPages makes the stream's database refuse to grow past n pages
// (0: its current size), as a full disk would: SQLite's writes then fail
// with SQLITE_FULL.
func setMaxPages(tb testing.TB, ts *testStream, n int) {
	tb.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if n == 0 {
		if err := execOnce(ts.conn, "PRAGMA page_count", func(st *sqlite.Stmt) error {
			n = st.ColumnInt(0)
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := execScript(ts.conn, fmt.Sprintf("PRAGMA max_page_count=%d", n)); err != nil {
		tb.Fatal(err)
	}
}

// TestStream_StorageFull checks a write on a full disk: ErrStorageFull
// naming the path, nothing written (no seq, revision, count, event or
// message id used), reads unaffected, and once there is space again the
// next write succeeds as if the failed one had never been made.
func TestStream_StorageFull(t *testing.T) {
	cfg := subjects.DefaultConfig()
	cfg.Compression = subjects.CompressionNone
	ts := openTest(t, &cfg)
	ts.put(t, Write{Data: []byte("a"), MsgID: "m1"})
	ts.put(t, keyed("k", "b"))
	ts.rec.take()
	inv := ts.inventory(t)
	big := make([]byte, 64<<10) // needs new pages
	rand.New(rand.NewSource(1)).Read(big)

	setMaxPages(t, ts, 0)
	writes := []Write{{Data: []byte("small"), MsgID: "m2"}, {Data: big, Key: "k"}}
	res, err := ts.Append(writes)
	if !errors.Is(err, ErrStorageFull) || !strings.Contains(err.Error(), ts.path) || res != nil {
		t.Fatalf("Append() on a full disk = %v, %v; want ErrStorageFull naming %s", res, err, ts.path)
	}
	if got := ts.inventory(t); !reflect.DeepEqual(got, inv) {
		t.Fatalf("Inventory() after the failed write = %+v, want %+v", got, inv)
	}
	if evs := ts.rec.take(); len(evs) != 0 {
		t.Fatalf("events of the failed write: %v", summary(evs))
	}
	if m, err := ts.GetKey("k"); err != nil || string(m.Data) != "b" {
		t.Fatalf("GetKey(k) on a full disk = %v, %v", m, err)
	}
	if got := ts.seqs(t); !reflect.DeepEqual(got, []uint64{1, 2}) {
		t.Fatalf("seqs on a full disk = %v, want [1 2]", got)
	}

	setMaxPages(t, ts, 1<<30)
	res = ts.mustAppend(t, writes...)
	for i, r := range res {
		if r.Err != nil || r.Duplicate || r.Seq != uint64(3+i) {
			t.Fatalf("Append() item %d after space returned = %+v, want seq %d", i, r, 3+i)
		}
	}
	wantEvents(t, ts.rec.take(), fmt.Sprintf("%d set 3 \"\"", inv.Revision+1), fmt.Sprintf("%d set 4 \"k\"", inv.Revision+2))
	ts.reopen(t)
	if m, err := ts.GetKey("k"); err != nil || m.Seq != 4 || !bytes.Equal(m.Data, big) {
		t.Fatalf("GetKey(k) after reopen = %v, want seq 4", err)
	}
	if got := ts.inventory(t); got.Count != 3 || got.LastSeq != 4 || got.Revision != inv.Revision+2 {
		t.Fatalf("Inventory() after reopen = %+v", got)
	}
}

// TestStream_StorageFullConfig checks a config change on a full disk.
func TestStream_StorageFullConfig(t *testing.T) {
	ts := openTest(t, nil)
	ts.put(t, data("a"))
	setMaxPages(t, ts, 0)
	c := ts.Config()
	c.Desc = []byte(`"` + strings.Repeat("d", 60<<10) + `"`)
	if _, err := ts.SetConfig(c); !errors.Is(err, ErrStorageFull) {
		t.Fatalf("SetConfig() on a full disk = %v, want ErrStorageFull", err)
	}
	if got := ts.Config(); got.Desc != nil {
		t.Fatalf("Config() after the failed change has desc %d bytes", len(got.Desc))
	}
	setMaxPages(t, ts, 1<<30)
	if _, err := ts.SetConfig(c); err != nil {
		t.Fatal(err)
	}
}

func TestFileErr(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		err := fileErr(&os.PathError{Op: "write", Path: "/d/s.db", Err: errno})
		if !errors.Is(err, ErrStorageFull) || !strings.Contains(err.Error(), "/d/s.db") {
			t.Errorf("fileErr(%v) = %v, want ErrStorageFull naming the path", errno, err)
		}
	}
	if err := fileErr(&os.PathError{Op: "write", Path: "/d/s.db", Err: syscall.EIO}); errors.Is(err, ErrStorageFull) {
		t.Errorf("fileErr(EIO) = %v, want not ErrStorageFull", err)
	}
}
