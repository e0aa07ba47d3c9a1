package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

const movePartitions = 8

// runLeaseServer runs a nats-server with JetStream (for the leases) and
// the partition mappings of movePartitions, on a free port.
func runLeaseServer(tb testing.TB) *server.Server {
	tb.Helper()
	block, err := subjects.PartitionMappingsBlock(subjects.DefaultPrefix, movePartitions)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	var text strings.Builder
	fmt.Fprintf(&text, "jetstream { store_dir: %q }\n%s", filepath.Join(dir, "js"), block)
	path := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(path, []byte(text.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.NoSigs, opts.NoLog = true, true
	return runServer(tb, opts)
}

// served asks every worker which partitions it serves now, by service id.
func served(tb testing.TB, nc *nats.Conn) map[string][]int {
	tb.Helper()
	ws, err := client.New(nc).Workers(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	got := map[string][]int{}
	for _, w := range ws {
		got[w.ID] = w.Partitions
	}
	return got
}

// spread reports whether n workers serve every partition once each, and
// their fair shares.
func spread(s map[string][]int, n int) bool {
	if len(s) != n {
		return false
	}
	seen := map[int]bool{}
	for _, parts := range s {
		if len(parts) != movePartitions/n {
			return false
		}
		for _, p := range parts {
			seen[p] = true
		}
	}
	return len(seen) == movePartitions
}

// eventually polls cond for up to 30 s.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

// ack is one acknowledged set.
type ack struct {
	seq      uint64
	data     string
	sent, at time.Time
}

// writers set on streams in turn from four goroutines until stopped,
// retrying what a partition on the move answers (503, no responders, a
// timeout), and record every acknowledged set.
type writers struct {
	mu    sync.Mutex
	acked map[string][]ack
	fails []string
	n     int
	quit  chan struct{}
	wg    sync.WaitGroup
}

func startWriters(nc *nats.Conn, streams []string) *writers {
	w := &writers{acked: map[string][]ack{}, quit: make(chan struct{})}
	for id := range 4 {
		w.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-w.quit:
					return
				default:
				}
				s := streams[(i*4+id)%len(streams)]
				data := fmt.Sprintf("w%d-%d", id, i)
				sent := time.Now()
				m, err := nc.Request("persist.api.set."+s, []byte(data), 2*time.Second)
				var r subjects.SetReply
				switch {
				case errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders):
					time.Sleep(10 * time.Millisecond)
					continue
				case err != nil:
					w.fail("set %s: %v", s, err)
					continue
				case m.Header.Get("Nats-Service-Error-Code") == "503":
					time.Sleep(10 * time.Millisecond)
					continue
				case m.Header.Get("Nats-Service-Error-Code") != "" || json.Unmarshal(m.Data, &r) != nil:
					w.fail("set %s: %q", s, m.Data)
					continue
				}
				w.mu.Lock()
				w.acked[s] = append(w.acked[s], ack{r.Seq, data, sent, time.Now()})
				w.n++
				w.mu.Unlock()
			}
		})
	}
	return w
}

func (w *writers) fail(format string, args ...any) {
	w.mu.Lock()
	w.fails = append(w.fails, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

func (w *writers) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *writers) stop() {
	close(w.quit)
	w.wg.Wait()
}

// check checks what w recorded: no seq of a stream acknowledged twice,
// and every acknowledged write that must survive (keep) there, as
// written. It returns the highest seq acknowledged of each stream before
// t0.
func (w *writers) check(t *testing.T, nc *nats.Conn, keep func(stream string, seq uint64) bool, t0 time.Time) map[string]uint64 {
	t.Helper()
	for _, f := range w.fails {
		t.Error(f)
	}
	before := map[string]uint64{}
	for s, acks := range w.acked {
		seen := map[uint64]string{}
		for _, a := range acks {
			if d, ok := seen[a.seq]; ok {
				t.Errorf("%s: seq %d acknowledged twice, for %q and %q", s, a.seq, d, a.data)
			}
			seen[a.seq] = a.data
			if a.at.Before(t0) {
				before[s] = max(before[s], a.seq)
			}
			if !keep(s, a.seq) {
				continue
			}
			m, err := nc.Request("persist.api.get."+s, fmt.Appendf(nil, `{"seq":%d}`, a.seq), 5*time.Second)
			if err != nil || string(m.Data) != a.data {
				t.Errorf("%s seq %d: %v %q, want the acknowledged %q", s, a.seq, err, msgData(m), a.data)
			}
		}
	}
	return before
}

func msgData(m *nats.Msg) []byte {
	if m == nil {
		return nil
	}
	return m.Data
}

// archivedSeq reads the last seq of the archive copy at path, through a
// copy of it (opening the copy itself would change it): 0 when there is
// none.
func archivedSeq(tb testing.TB, path string) uint64 {
	tb.Helper()
	in, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	} else if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	cp := filepath.Join(tb.TempDir(), "copy.db")
	out, err := os.Create(cp)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		tb.Fatal(err)
	}
	out.Close()
	st, err := store.Open(cp, store.Options{})
	if err != nil {
		tb.Fatalf("open a copy of %s: %v", path, err)
	}
	defer st.Close()
	return st.LastSeq()
}

// moveStreams are streams of many namespaces, over every partition.
func moveStreams() []string {
	var streams []string
	seen := map[int]bool{}
	for i := 0; len(seen) < movePartitions || len(streams) < 16; i++ {
		s := fmt.Sprintf("ns%d.docs", i)
		seen[subjects.Partition(s, movePartitions)] = true
		streams = append(streams, s)
	}
	return streams
}

// killOne runs two leasing workers with args and their own args (the
// data directories), loads them, SIGKILLs the first, calls atKill at once,
// and returns the writers once the second serves every partition and
// more writes were acknowledged; also the partitions the killed one had,
// the time of the kill and the takeover (the first write acknowledged on
// a moved partition sent after it).
func killOne(t *testing.T, nc *nats.Conn, url string, args [2][]string, atKill func()) (w *writers, moved []int, killed time.Time, takeover time.Duration) {
	var cs []*child
	for i := range 2 {
		c := startChild(t, append([]string{"--nats-url", url, "--partitions", "auto", "--lease-ttl", "2s",
			"--instance-check-interval", "1h"}, args[i]...)...)
		c.logs.wait(t, "persist worker started")
		cs = append(cs, c)
	}
	eventually(t, "the partitions spread over two workers", func() bool { return spread(served(t, nc), 2) })
	streams := moveStreams()
	w = startWriters(nc, streams)
	eventually(t, "writes acknowledged", func() bool { return w.count() >= 400 })
	before := served(t, nc)
	if err := cs[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = time.Now()
	<-cs[0].done
	atKill()
	var after map[string][]int
	eventually(t, "the last worker serving every partition", func() bool {
		after = served(t, nc)
		return spread(after, 1)
	})
	for id, parts := range before {
		if _, ok := after[id]; !ok {
			moved = parts
		}
	}
	if len(moved) == 0 {
		t.Fatalf("partitions before the kill %v, after %v: none moved", before, after)
	}
	n := w.count()
	eventually(t, "writes after the takeover", func() bool { return w.count() >= n+400 })
	w.stop()
	first := time.Time{}
	for s, acks := range w.acked {
		if !slices.Contains(moved, subjects.Partition(s, movePartitions)) {
			continue
		}
		for _, a := range acks {
			if a.sent.After(killed) && (first.IsZero() || a.at.Before(first)) {
				first = a.at
			}
		}
	}
	return w, moved, killed, first.Sub(killed)
}

// TestProcess_KillWithArchive SIGKILLs one of two leasing workers that
// share only an archive, under load: no seq is acknowledged twice, every
// write acknowledged before the killed worker's last archive snapshot of
// its stream is there, and a stream that lost writes jumps: changes after
// a lost revision is 410.
func TestProcess_KillWithArchive(t *testing.T) {
	srv := runLeaseServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	archive := t.TempDir()
	common := []string{"--archive", archive, "--archive-interval", "200ms"}
	archived := map[string]uint64{}
	w, moved, killed, takeover := killOne(t, nc, srv.ClientURL(),
		[2][]string{append([]string{"--data", t.TempDir()}, common...), append([]string{"--data", t.TempDir()}, common...)},
		func() {
			// Before the next owner opens (and snapshots) anything: its
			// leases are claimed a TTL after the kill at the earliest.
			for _, s := range moveStreams() {
				archived[s] = archivedSeq(t, filepath.Join(archive, subjects.Path(s)))
			}
		})
	t.Logf("partitions %v moved; first write on them %v after the kill", moved, takeover)
	onMoved := func(s string) bool { return slices.Contains(moved, subjects.Partition(s, movePartitions)) }
	last := w.check(t, nc, func(s string, seq uint64) bool { return !onMoved(s) || seq <= archived[s] }, killed)
	lost, writes := 0, 0
	for s, seq := range last {
		if !onMoved(s) || seq <= archived[s] {
			continue
		}
		lost++
		writes += int(seq - archived[s])
		// Revision = seq here (sets only): archived[s]+1 was handed out
		// by the killed worker and lost.
		body := fmt.Appendf(nil, `{"after_revision":%d}`, archived[s]+1)
		m, err := nc.Request("persist.api.changes."+s, body, 5*time.Second)
		if err != nil || m.Header.Get("Nats-Service-Error-Code") != "410" {
			t.Errorf("%s lost seqs %d-%d: changes after revision %d: %v %q, want 410", s, archived[s]+1, seq, archived[s]+1, err, msgData(m))
		}
	}
	t.Logf("%d streams of the moved partitions lost writes (seqs acknowledged after their last snapshot: %d)", lost, writes)
}

// TestProcess_KillSharedDataDir SIGKILLs one of two leasing workers on
// one shared data directory, without an archive, under load: every
// acknowledged write is there, no seq was given twice, and the seqs and
// revisions go on without a gap or a jump.
func TestProcess_KillSharedDataDir(t *testing.T) {
	srv := runLeaseServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	data := t.TempDir()
	args := []string{"--data", data, "--shared-data-dir"}
	w, moved, killed, takeover := killOne(t, nc, srv.ClientURL(), [2][]string{args, args}, func() {})
	t.Logf("partitions %v moved; first write on them %v after the kill", moved, takeover)
	w.check(t, nc, func(string, uint64) bool { return true }, killed)
	for s := range w.acked {
		m, err := nc.Request("persist.api.inventory."+s, nil, 5*time.Second)
		var inv subjects.Inventory
		if err != nil || json.Unmarshal(m.Data, &inv) != nil {
			t.Fatalf("inventory %s: %v %q", s, err, msgData(m))
		}
		if inv.Count != int64(inv.LastSeq) || inv.Revision != inv.LastSeq {
			t.Errorf("%s: count %d, last seq %d, revision %d: want all three equal (no gap, no jump)", s, inv.Count, inv.LastSeq, inv.Revision)
		}
	}
}
