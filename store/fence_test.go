package store

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-persist/persist/subjects"
)

// fenceCluster is two or more workers, each with a data directory of its
// own, sharing one archive directory: the setting a fence is for.
type fenceCluster struct {
	root    string
	archive string // the stream's archive copy
	ahead   uint64
}

func newFenceCluster(tb testing.TB) *fenceCluster {
	tb.Helper()
	root := tb.TempDir()
	return &fenceCluster{root: root, archive: filepath.Join(root, "archive", "acme", "s.db")}
}

// opts are the options worker owner opens the stream with.
func (c *fenceCluster) opts(owner string) Options {
	return Options{
		Create:          true,
		NoSweep:         true,
		Name:            "acme.s",
		ArchivePath:     c.archive,
		ArchiveInterval: time.Hour, // snapshots are taken by fenceSnapshot
		Fence:           &Fence{Owner: owner, Ahead: c.ahead},
	}
}

// local is owner's stream file.
func (c *fenceCluster) local(owner string) string {
	return filepath.Join(c.root, "data-"+owner, "acme", "s.db")
}

func (c *fenceCluster) open(tb testing.TB, owner string) *Stream {
	tb.Helper()
	s, err := Open(c.local(owner), c.opts(owner))
	if err != nil {
		tb.Fatalf("Open(%s) = %v", owner, err)
	}
	tb.Cleanup(func() { s.Abandon() })
	return s
}

func (c *fenceCluster) fence(tb testing.TB) *fenceRecord {
	tb.Helper()
	r, err := readFence(fencePath(c.archive))
	if err != nil {
		tb.Fatalf("readFence() = %v", err)
	}
	return r
}

// fenceSnapshot runs the stream's timer now, as when its archive interval
// has passed: it writes the periodic archive snapshot, unless the fence
// refuses it.
func fenceSnapshot(s *Stream) {
	s.mu.Lock()
	s.archive.last = time.Time{}
	s.mu.Unlock()
	s.timers.Add(1)
	s.fire()
	// A stream that had nothing to snapshot left its last snapshot's
	// time as it was; the next interval starts now either way.
	s.mu.Lock()
	s.archive.last = time.Now()
	s.mu.Unlock()
}

// fenceWrite appends one message with data and returns its seq.
func fenceWrite(tb testing.TB, s *Stream, data string) uint64 {
	tb.Helper()
	res, err := s.Append([]Write{{Data: []byte(data)}})
	if err != nil {
		tb.Fatalf("Append(%q) = %v", data, err)
	}
	if res[0].Err != nil {
		tb.Fatalf("Append(%q) = %v", data, res[0].Err)
	}
	return res[0].Seq
}

// fenceWriteN appends from, from+1, ... to "<prefix><i>" and checks that
// each got the next seq.
func fenceWriteN(tb testing.TB, s *Stream, prefix string, from, to int) {
	tb.Helper()
	for i := from; i <= to; i++ {
		want := s.LastSeq() + 1
		if got := fenceWrite(tb, s, fmt.Sprintf("%s%d", prefix, i)); got != want {
			tb.Fatalf("Append() seq = %d, want %d", got, want)
		}
	}
}

// fenceContent is every message of s as "seq:data".
func fenceContent(tb testing.TB, s *Stream) []string {
	tb.Helper()
	var out []string
	if _, err := s.Read(ReadQuery{}, func(m *Message) error {
		out = append(out, fmt.Sprintf("%d:%s", m.Seq, m.Data))
		return nil
	}); err != nil {
		tb.Fatalf("Read() = %v", err)
	}
	return out
}

// fenceFileContent is fenceContent of the (closed) stream file at path.
func fenceFileContent(tb testing.TB, path string) []string {
	tb.Helper()
	var out []string
	for _, m := range tierMessages(tb, path) {
		out = append(out, fmt.Sprintf("%d:%s", m.Seq, m.Data))
	}
	return out
}

// fenceChanges counts the changes after rev, or returns Changes' error.
func fenceChanges(s *Stream, rev uint64) (int, error) {
	n := 0
	_, err := s.Changes(ChangesQuery{AfterRevision: rev}, func(*Event) error { n++; return nil })
	return n, err
}

func TestFence_CleanMove(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 10)
	revA := a.Revision()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := c.fence(t); *got != (fenceRecord{Owner: "A", Revision: revA, Seq: 10, Clean: true}) {
		t.Fatalf("fence after Close = %+v, want A's clean mark at revision %d", got, revA)
	}

	b := c.open(t, "B")
	if got := b.Revision(); got != revA {
		t.Fatalf("B: Revision() = %d, want %d: nothing was lost, no jump", got, revA)
	}
	if got := fenceWrite(t, b, "b11"); got != 11 {
		t.Fatalf("B: first seq = %d, want 11", got)
	}
	if got, want := b.Revision(), revA+1; got != want {
		t.Fatalf("B: Revision() = %d, want %d", got, want)
	}
	if n, err := fenceChanges(b, 5); err != nil || n != 6 {
		t.Fatalf("B: Changes(after 5) = %d changes, %v; want 6, nil", n, err)
	}
	if got := c.fence(t); got.Owner != "B" || got.Clean || got.Revision < b.Revision() {
		t.Fatalf("fence = %+v, want B's reservation", got)
	}
}

// TestFence_ReopenWritesNothing checks that opening and closing a stream
// cleanly closed by the same owner, without a write, replaces neither the
// fence nor the archive copy.
func TestFence_ReopenWritesNothing(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 3)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	stat := func(path string) os.FileInfo {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	fence, archive := stat(fencePath(c.archive)), stat(c.archive)
	a = c.open(t, "A")
	if _, err := a.Get(1); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fence, stat(fencePath(c.archive))) || !os.SameFile(archive, stat(c.archive)) {
		t.Fatal("an open and close without a write replaced the fence or the archive copy")
	}
}

func TestFence_UncleanMove(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 5)
	fenceSnapshot(a)
	if got := tierRevision(t, c.archive); got != 5 {
		t.Fatalf("archive revision = %d, want 5", got)
	}
	fenceWriteN(t, a, "a", 6, 10)
	revA := a.Revision()
	// A dies: what is on its disk stays there, nothing reaches the
	// archive.
	dead := filepath.Join(t.TempDir(), "dead.db")
	tierCopy(t, c.local("A"), dead)
	if err := a.Abandon(); err != nil {
		t.Fatal(err)
	}
	reserved := c.fence(t)

	b := c.open(t, "B")
	if got, want := b.Revision(), reserved.Revision+1; got != want {
		t.Fatalf("B: Revision() = %d, want %d (one past A's reservation)", got, want)
	}
	seq := fenceWrite(t, b, "b")
	if seq <= 10 || seq != reserved.Seq+1 {
		t.Fatalf("B: first seq = %d, want %d: past every seq A gave out", seq, reserved.Seq+1)
	}
	if got := fenceContent(t, b); !slices.Equal(got[:5], []string{"1:a1", "2:a2", "3:a3", "4:a4", "5:a5"}) || len(got) != 6 {
		t.Fatalf("B: content = %q, want A's 5 archived messages and B's", got)
	}
	for _, rev := range []uint64{0, 5, 7, revA, reserved.Revision} {
		if _, err := fenceChanges(b, rev); !errors.Is(err, ErrRevisionGone) {
			t.Fatalf("B: Changes(after %d) = %v, want ErrRevisionGone", rev, err)
		}
	}
	if n, err := fenceChanges(b, reserved.Revision+1); err != nil || n != 1 {
		t.Fatalf("B: Changes(after the jump) = %d changes, %v; want 1 (B's set), nil", n, err)
	}
	// No (stream, seq) was given twice with other content.
	aSeqs := map[uint64]string{}
	for _, m := range tierMessages(t, dead) {
		aSeqs[m.Seq] = string(m.Data)
	}
	if len(aSeqs) != 10 {
		t.Fatalf("A's disk holds %d messages, want 10", len(aSeqs))
	}
	for _, line := range fenceContent(t, b) {
		var s uint64
		var data string
		fmt.Sscanf(line, "%d:%s", &s, &data)
		if old, ok := aSeqs[s]; ok && old != data {
			t.Fatalf("seq %d is %q on A and %q on B", s, old, data)
		}
	}
}

func TestFence_Divergent(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 4)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := c.open(t, "B")
	if _, err := b.DeleteSeqs(1); err != nil {
		t.Fatal(err)
	}
	fenceWriteN(t, b, "b", 5, 7)
	want := fenceContent(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// A's old file, at a lower revision than B's, but A's once: B's
	// history is the stream's.
	a = c.open(t, "A")
	if got := fenceContent(t, a); !slices.Equal(got, want) {
		t.Fatalf("A: content = %q, want B's %q", got, want)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// A local file ahead of the archive, written by an owner that lost
	// the stream: replaced too, although its revision is higher.
	a = c.open(t, "A")
	fenceWriteN(t, a, "x", 1, 2)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b = c.open(t, "B") // B's file is behind the archive: restored
	want = fenceContent(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	tierCopy(t, c.local("A"), filepath.Join(t.TempDir(), "keep.db"))
	s, err := Open(c.local("A"), Options{NoSweep: true})
	if err != nil {
		t.Fatal(err)
	}
	fenceWriteN(t, s, "divergent", 1, 3) // no fence: a copy of its own
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got, arch := tierRevision(t, c.local("A")), tierRevision(t, c.archive); got <= arch {
		t.Fatalf("A's file revision %d, archive %d: the test needs it higher", got, arch)
	}
	a = c.open(t, "A")
	if got := fenceContent(t, a); !slices.Equal(got, want) {
		t.Fatalf("A: content = %q, want B's %q", got, want)
	}
}

func TestFence_OwnLocalKept(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 5)
	fenceSnapshot(a)
	fenceWriteN(t, a, "a", 6, 8)
	want, rev := fenceContent(t, a), a.Revision()
	if err := a.Abandon(); err != nil {
		t.Fatal(err)
	}
	if got := tierRevision(t, c.archive); got != 5 {
		t.Fatalf("archive revision = %d after Abandon, want 5", got)
	}
	a = c.open(t, "A")
	if got := fenceContent(t, a); !slices.Equal(got, want) {
		t.Fatalf("A: content = %q, want %q", got, want)
	}
	if got := a.Revision(); got != rev {
		t.Fatalf("A: Revision() = %d, want %d: its own file, no jump", got, rev)
	}
	if got := fenceWrite(t, a, "a9"); got != 9 {
		t.Fatalf("A: next seq = %d, want 9", got)
	}
	if n, err := fenceChanges(a, 2); err != nil || n != 7 {
		t.Fatalf("A: Changes(after 2) = %d, %v; want 7, nil", n, err)
	}
	// The archive is behind the file: Close brings it up to date,
	// although nothing changed since the open but one write.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := tierRevision(t, c.archive), rev+1; got != want {
		t.Fatalf("archive revision = %d after Close, want %d", got, want)
	}
	if got := c.fence(t); !got.Clean || got.Revision != rev+1 || got.Seq != 9 {
		t.Fatalf("fence = %+v, want clean at revision %d, seq 9", got, rev+1)
	}
}

// TestFence_OwnLocalKilled is TestFence_OwnLocalKept with the file as a
// killed worker leaves it: copied while the stream is open, with its -wal.
func TestFence_OwnLocalKilled(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 5)
	fenceSnapshot(a)
	fenceWriteN(t, a, "a", 6, 8)
	want, rev := fenceContent(t, a), a.Revision()
	killed := filepath.Join(t.TempDir(), "data-A", "acme", "s.db")
	tierCopy(t, c.local("A"), killed)
	if err := a.Abandon(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(killed, c.opts("A"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := fenceContent(t, s); !slices.Equal(got, want) || s.Revision() != rev {
		t.Fatalf("A after its kill: %q at revision %d, want %q at %d", got, s.Revision(), want, rev)
	}
}

func TestFence_OwnLocalLost(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 5)
	fenceSnapshot(a)
	fenceWriteN(t, a, "a", 6, 8)
	if err := a.Abandon(); err != nil {
		t.Fatal(err)
	}
	reserved := c.fence(t)
	// A's disk is lost; A itself comes back: its reservation may have
	// been used by the writes lost with the disk.
	if err := os.RemoveAll(filepath.Dir(c.local("A"))); err != nil {
		t.Fatal(err)
	}
	a = c.open(t, "A")
	if got, want := a.Revision(), reserved.Revision+1; got != want {
		t.Fatalf("A: Revision() = %d, want %d", got, want)
	}
	if got := fenceWrite(t, a, "again"); got != reserved.Seq+1 {
		t.Fatalf("A: next seq = %d, want %d", got, reserved.Seq+1)
	}
}

func TestFence_LateSnapshotRefused(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 3)
	fenceSnapshot(a)
	// A's lease runs out; B takes over while A still holds the stream
	// open.
	b := c.open(t, "B")
	fenceWriteN(t, b, "b", 1, 2)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	want := fenceFileContent(t, c.archive)
	wantFence := c.fence(t)

	// A still takes writes within its reservation (the lease keeps a
	// worker that lost it from getting here)...
	fenceWrite(t, a, "late")
	// ... but neither its periodic snapshot nor its Close writes the
	// archive, nor a clean mark.
	fenceSnapshot(a)
	if got := fenceFileContent(t, c.archive); !slices.Equal(got, want) {
		t.Fatalf("archive after A's snapshot = %q, want B's %q", got, want)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fenceFileContent(t, c.archive); !slices.Equal(got, want) {
		t.Fatalf("archive after A's Close = %q, want B's %q", got, want)
	}
	if got := c.fence(t); *got != *wantFence {
		t.Fatalf("fence after A's Close = %+v, want B's %+v", got, wantFence)
	}
}

func TestFence_ReserveRefused(t *testing.T) {
	c := newFenceCluster(t)
	c.ahead = 2
	a := c.open(t, "A")
	for a.Revision() < 3 || a.Revision() < c.fence(t).Revision {
		fenceWrite(t, a, "a")
	}
	b := c.open(t, "B")
	fenceWrite(t, b, "b")
	// A's reservation is used up: its next write needs a fence, which
	// names B now.
	rev := a.Revision()
	_, err := a.Append([]Write{{Data: []byte("late")}})
	if !errors.Is(err, ErrFenced) || !errors.Is(err, ErrLocked) {
		t.Fatalf("A: Append() = %v, want ErrFenced (an ErrLocked)", err)
	}
	if got := a.Revision(); got != rev {
		t.Fatalf("A: Revision() = %d after a refused write, want %d", got, rev)
	}
	if got := fenceContent(t, a); len(got) != int(rev) {
		t.Fatalf("A: content = %q, want its %d messages", got, rev)
	}
	if got := c.fence(t); got.Owner != "B" {
		t.Fatalf("fence = %+v, want B's", got)
	}
}

func TestFence_Reservation(t *testing.T) {
	c := newFenceCluster(t)
	c.ahead = 4
	a := c.open(t, "A")
	if got := c.fence(t); got != nil {
		t.Fatalf("fence of an empty new stream = %+v, want none until a write", got)
	}
	writes := 0
	last := uint64(0)
	for i := range 20 {
		if i%5 == 4 {
			if _, err := a.DeleteSeqs(a.LastSeq()); err != nil {
				t.Fatal(err)
			}
		} else {
			fenceWrite(t, a, "m")
		}
		f := c.fence(t)
		if f == nil || f.Revision < a.Revision() || f.Seq < a.LastSeq() {
			t.Fatalf("after commit %d: fence %+v reserves less than revision %d, seq %d", i, f, a.Revision(), a.LastSeq())
		}
		if f.Revision != last {
			writes++
			last = f.Revision
		}
	}
	// Each fence write covers the revision of its commit and Ahead more.
	if writes != 4 {
		t.Fatalf("fence written %d times for 20 revisions with Ahead 4, want 4", writes)
	}

	t.Run("WriteFails", func(t *testing.T) {
		for a.Revision() < last {
			fenceWrite(t, a, "m") // use up the reservation
		}
		rev, seq := a.Revision(), a.LastSeq()
		dir := filepath.Dir(c.archive)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, []byte("in the way"), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := a.Append([]Write{{Data: []byte("unreserved")}})
		if err == nil {
			t.Fatalf("Append() = %+v, nil; want the fence's error", res)
		}
		if got := a.Revision(); got != rev {
			t.Fatalf("Revision() = %d after a failed fence write, want %d", got, rev)
		}
		if _, err := a.Get(seq + 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%d) = %v, want ErrNotFound: nothing committed", seq+1, err)
		}
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if got := fenceWrite(t, a, "after"); got != seq+1 {
			t.Fatalf("seq after the archive came back = %d, want %d", got, seq+1)
		}
	})
}

func TestFence_CreatedPastFence(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 3)
	if err := a.Abandon(); err != nil { // never archived
		t.Fatal(err)
	}
	b := c.open(t, "B") // no archive copy: created afresh
	if got := fenceWrite(t, b, "b"); got <= 3 {
		t.Fatalf("B: first seq = %d, want past A's 3", got)
	}
	if err := b.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fencePath(c.archive)); !os.IsNotExist(err) {
		t.Fatalf("fence after Destroy: %v, want none", err)
	}
	b = c.open(t, "B")
	if got := fenceWrite(t, b, "new"); got != 1 {
		t.Fatalf("first seq after Destroy = %d, want 1", got)
	}

	t.Run("Missing", func(t *testing.T) {
		// The other owner's copy without an archive copy is superseded:
		// the stream is missing.
		opts := c.opts("A")
		opts.Create = false
		if _, err := Open(c.local("A"), opts); !errors.Is(err, ErrNotFound) {
			t.Fatalf("A: Open() = %v, want ErrNotFound", err)
		}
		if _, err := os.Stat(c.local("A")); !os.IsNotExist(err) {
			t.Fatalf("A's superseded file: %v, want it removed", err)
		}
	})
}

func TestFence_Options(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"NoArchive", Options{Create: true, Fence: &Fence{Owner: "A"}}},
		{"NoOwner", Options{Create: true, ArchivePath: filepath.Join(dir, "a.db"), Fence: &Fence{}}},
		{"LongOwner", Options{Create: true, ArchivePath: filepath.Join(dir, "a.db"), Fence: &Fence{Owner: strings.Repeat("x", 129)}}},
		{"Unprintable", Options{Create: true, ArchivePath: filepath.Join(dir, "a.db"), Fence: &Fence{Owner: "a\nb"}}},
		{"AheadTooFar", Options{Create: true, ArchivePath: filepath.Join(dir, "a.db"), Fence: &Fence{Owner: "A", Ahead: MaxFenceAhead + 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".db")
			if s, err := Open(path, tc.opts); !errors.Is(err, ErrInvalid) {
				if err == nil {
					s.Close()
				}
				t.Fatalf("Open() = %v, want ErrInvalid", err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("stream file after a refused Open: %v, want none", err)
			}
		})
	}
	t.Run("Memory", func(t *testing.T) {
		s, err := Open("mem", Options{Create: true, Memory: true, Fence: &Fence{}})
		if err != nil {
			t.Fatalf("Open(memory) = %v, want the fence ignored", err)
		}
		defer s.Close()
		fenceWriteN(t, s, "m", 1, 3)
	})
}

func TestFence_Damaged(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"Empty", ""},
		{"NotJSON", "owner=A"},
		{"Array", `[1]`},
		{"Null", `null`},
		{"NoOwner", `{"revision":3,"seq":3}`},
		{"BadOwner", `{"owner":"\u0000","revision":3,"seq":3}`},
		{"Negative", `{"owner":"A","revision":-1,"seq":0}`},
		{"Huge", fmt.Sprintf(`{"owner":"A","revision":%d,"seq":0}`, uint64(math.MaxUint64))},
		{"Trailing", `{"owner":"A","revision":3,"seq":3}x`},
		{"Long", `{"owner":"A","revision":3,"seq":3,"pad":"` + strings.Repeat("x", maxFenceFile) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFenceCluster(t)
			if err := os.MkdirAll(filepath.Dir(c.archive), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(fencePath(c.archive), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if s, err := Open(c.local("A"), c.opts("A")); !errors.Is(err, ErrCorrupt) {
				if err == nil {
					s.Close()
				}
				t.Fatalf("Open() = %v, want ErrCorrupt", err)
			}
			if got, err := os.ReadFile(fencePath(c.archive)); err != nil || string(got) != tc.content {
				t.Fatalf("fence file after Open = %q, %v; want it left as it was", got, err)
			}
		})
	}
	t.Run("Directory", func(t *testing.T) {
		c := newFenceCluster(t)
		if err := os.MkdirAll(fencePath(c.archive), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(c.local("A"), c.opts("A")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open() = %v, want ErrCorrupt", err)
		}
	})
	t.Run("AtClose", func(t *testing.T) {
		c := newFenceCluster(t)
		s := c.open(t, "A")
		fenceWrite(t, s, "a")
		if err := os.WriteFile(fencePath(c.archive), []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Close() = %v, want ErrCorrupt", err)
		}
		if _, err := os.Stat(c.archive); !os.IsNotExist(err) {
			t.Fatalf("archive copy after Close: %v, want none written", err)
		}
	})
	t.Run("UnknownField", func(t *testing.T) {
		c := newFenceCluster(t)
		if err := os.MkdirAll(filepath.Dir(c.archive), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fencePath(c.archive), []byte(`{"owner":"B","revision":7,"seq":5,"clean":false,"epoch":3}`), 0o644); err != nil {
			t.Fatal(err)
		}
		s := c.open(t, "A")
		if got := fenceWrite(t, s, "a"); got != 6 {
			t.Fatalf("first seq = %d, want 6 (past the fence)", got)
		}
	})
}

// TestFence_Events checks what a watcher sees across an unclean move: the
// new owner's first event skips revisions, and changes after the last
// revision it saw are gone.
func TestFence_Events(t *testing.T) {
	c := newFenceCluster(t)
	a := c.open(t, "A")
	fenceWriteN(t, a, "a", 1, 3)
	fenceSnapshot(a)
	seen := a.Revision()
	if err := a.Abandon(); err != nil {
		t.Fatal(err)
	}
	var evs []Event
	opts := c.opts("B")
	opts.Notify = func(e []Event) { evs = append(evs, e...) }
	b, err := Open(c.local("B"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(evs) != 0 {
		t.Fatalf("events at open = %+v, want none: a jump publishes nothing", evs)
	}
	fenceWrite(t, b, "b")
	if len(evs) != 1 || evs[0].Op != subjects.OpSet || evs[0].Revision <= seen+1 {
		t.Fatalf("events = %+v, want one set past revision %d", evs, seen+1)
	}
	if _, err := fenceChanges(b, seen); !errors.Is(err, ErrRevisionGone) {
		t.Fatalf("Changes(after %d) = %v, want ErrRevisionGone", seen, err)
	}
}

// TestFence_ParseRoundTrip checks that what writeFence writes readFence
// reads back.
func TestFence_ParseRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x", "s.db.fence")
	want := fenceRecord{Owner: "worker-1 ü", Revision: 1 << 40, Seq: 12, Clean: true}
	if err := writeFence(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := readFence(path)
	if err != nil || *got != want {
		t.Fatalf("readFence() = %+v, %v; want %+v", got, err, want)
	}
	if left, _ := filepath.Glob(path + ".new-*"); len(left) != 0 {
		t.Fatalf("temporary files left: %q", left)
	}
}

// TestFence_Property moves a stream at random between three owners that
// share its archive, each leaving it cleanly (Close) or not (Abandon: as
// a killed worker, its file stays as it was), with writes, deletes and
// archive snapshots in between. No seq is ever given twice with other
// content; a move after a clean close continues exactly (same messages,
// same revision); an owner that gets its own file back has all of it; and
// any other move brings back exactly the last archived state, at a
// revision past every one acknowledged before.
func TestFence_Property(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { fenceProperty(t, seed) })
	}
}

func fenceProperty(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 9))
	c := newFenceCluster(t)
	c.ahead = uint64(1 + rng.IntN(8))
	owners := []string{"A", "B", "C"}
	given := map[uint64]string{} // every seq acknowledged, with its data
	var maxRev uint64            // the highest revision acknowledged
	var archived []string        // the archive copy's messages
	var archivedRev uint64       // and its revision
	written := 0

	owner := owners[0]
	s := c.open(t, owner)
	for step := range 120 {
		switch op := rng.IntN(10); {
		case op < 5:
			ws := make([]Write, 1+rng.IntN(3))
			for i := range ws {
				written++
				ws[i] = Write{Data: fmt.Appendf(nil, "w%d", written)}
			}
			res, err := s.Append(ws)
			if err != nil {
				t.Fatalf("step %d: %s: Append() = %v", step, owner, err)
			}
			for i, r := range res {
				if old, ok := given[r.Seq]; ok && old != string(ws[i].Data) {
					t.Fatalf("step %d: %s: seq %d given again: %q, was %q", step, owner, r.Seq, ws[i].Data, old)
				}
				given[r.Seq] = string(ws[i].Data)
			}
		case op < 6:
			if last := s.LastSeq(); last > 0 {
				if _, err := s.DeleteSeqs(1 + uint64(rng.IntN(int(last)))); err != nil {
					t.Fatalf("step %d: DeleteSeqs() = %v", step, err)
				}
			}
		case op < 7:
			fenceSnapshot(s)
			archived, archivedRev = fenceContent(t, s), s.Revision()
		default:
			// A move: the owner leaves, cleanly or not, and one of the
			// three (maybe the same) opens the stream.
			clean := rng.IntN(2) == 0
			before, rev := fenceContent(t, s), s.Revision()
			maxRev = max(maxRev, rev)
			var err error
			if clean {
				err = s.Close()
				archived, archivedRev = before, rev
			} else {
				err = s.Abandon()
			}
			if err != nil {
				t.Fatalf("step %d: %s: close (clean %v) = %v", step, owner, clean, err)
			}
			next := owners[rng.IntN(len(owners))]
			s = c.open(t, next)
			got := fenceContent(t, s)
			switch {
			case clean:
				if !slices.Equal(got, before) || s.Revision() != rev {
					t.Fatalf("step %d: %s after %s's clean close: %q at revision %d, want %q at %d", step, next, owner, got, s.Revision(), before, rev)
				}
			case next == owner:
				if !slices.Equal(got, before) || s.Revision() != rev {
					t.Fatalf("step %d: %s back on its own file: %q at revision %d, want %q at %d", step, next, got, s.Revision(), before, rev)
				}
			default:
				// Past every revision acknowledged, unless nothing was
				// acknowledged after the archive copy.
				lost := !slices.Equal(before, archived) || rev != archivedRev
				if !slices.Equal(got, archived) || s.Revision() < maxRev || lost && s.Revision() == maxRev {
					t.Fatalf("step %d: %s after %s was lost: %q at revision %d, want the archive's %q past %d", step, next, owner, got, s.Revision(), archived, maxRev)
				}
			}
			owner = next
		}
		maxRev = max(maxRev, s.Revision())
	}
}

// TestFence_ForeignDamage checks the damage rules under another owner's
// fence: a damaged local file is superseded and replaced by the archive
// copy; a damaged archive copy fails the open even with a sound local
// file, which is not the truth.
func TestFence_ForeignDamage(t *testing.T) {
	setup := func(t *testing.T) (*fenceCluster, []string) {
		c := newFenceCluster(t)
		a := c.open(t, "A")
		fenceWriteN(t, a, "a", 1, 3)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		b := c.open(t, "B")
		fenceWriteN(t, b, "b", 4, 5)
		want := fenceContent(t, b)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		return c, want
	}
	garbage := func(t *testing.T, path string) {
		if err := os.WriteFile(path, []byte(strings.Repeat("not a stream file ", 100)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("Local", func(t *testing.T) {
		c, want := setup(t)
		garbage(t, c.local("A"))
		a := c.open(t, "A")
		if got := fenceContent(t, a); !slices.Equal(got, want) {
			t.Fatalf("A: content = %q, want B's %q", got, want)
		}
	})
	t.Run("Archive", func(t *testing.T) {
		c, _ := setup(t)
		garbage(t, c.archive)
		if _, err := Open(c.local("A"), c.opts("A")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("A: Open() = %v, want ErrCorrupt", err)
		}
	})
}

// TestFence_JumpBlocks checks the counts of a stream that jumped over
// whole blocks of seqs (blocks of 4 here): a getall page's Num-Pending
// and the inventory agree with the messages there are.
func TestFence_JumpBlocks(t *testing.T) {
	c := newFenceCluster(t)
	c.ahead = 13
	open := func(owner string) *Stream {
		opts := c.opts(owner)
		opts.blockShift = 2
		s, err := Open(c.local(owner), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Abandon() })
		return s
	}
	a := open("A")
	fenceWriteN(t, a, "a", 1, 6)
	fenceSnapshot(a)
	fenceWriteN(t, a, "a", 7, 9)
	if err := a.Abandon(); err != nil {
		t.Fatal(err)
	}
	b := open("B")
	fenceWriteN(t, b, "b", 1, 11)
	if _, err := b.DeleteSeqs(2, b.LastSeq()-1); err != nil {
		t.Fatal(err)
	}
	all := fenceContent(t, b)
	inv, err := b.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if inv.Count != int64(len(all)) {
		t.Fatalf("Inventory().Count = %d, want %d", inv.Count, len(all))
	}
	var start uint64 = 1
	for read := 0; start != 0; {
		res, err := b.Read(ReadQuery{StartSeq: start, MaxMsgs: 2}, func(*Message) error { read++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if res.NextSeq != 0 && res.NumPending != int64(len(all)-read) {
			t.Fatalf("Read(from %d) NumPending = %d, want %d", start, res.NumPending, len(all)-read)
		}
		start = res.NextSeq
	}
}
