package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

func TestGetAll_100kPaging(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	startBroker(t, s, broker.Options{})
	nc := connect(t, s.ClientURL())
	st := client.New(nc, client.WithTimeout(30*time.Second)).Stream("acme.big")
	const n = 100_000
	start := time.Now()
	for base := 0; base < n; base += client.MaxSetMany {
		items := make([]client.Item, client.MaxSetMany)
		for i := range items {
			items[i].Data = []byte(strconv.Itoa(base + i + 1))
		}
		res, err := st.SetMany(ctx, items)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := res[len(res)-1].Seq, uint64(base+client.MaxSetMany); got != want {
			t.Fatalf("setmany last seq = %d, want %d", got, want)
		}
	}
	t.Logf("wrote %d messages with setmany in %v", n, time.Since(start))

	for _, tt := range []struct {
		name    string
		maxMsgs int
		perPage int
	}{
		{"Default", 0, 1000},
		{"Capped", 50_000, 10_000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			next, pages := uint64(1), 0
			for {
				body, _ := json.Marshal(map[string]any{"start_seq": next, "max_msgs": tt.maxMsgs})
				msgs, end := getAllRaw(t, nc, api("getall", "acme.big"), body)
				pages++
				for i, m := range msgs {
					if got, want := m.Header.Get("Persist-Seq"), itoa(next+uint64(i)); got != want || string(m.Data) != want {
						t.Fatalf("page %d message %d = seq %s %q, want %s", pages, i, got, m.Data, want)
					}
				}
				sent := next + uint64(len(msgs)) - 1
				pending := n - int(sent)
				if pending > 0 {
					if len(msgs) != tt.perPage {
						t.Fatalf("page %d has %d messages, want %d", pages, len(msgs), tt.perPage)
					}
					checkTerminator(t, end, n, n, pending, sent+1)
					next = sent + 1
					continue
				}
				checkTerminator(t, end, n, n, 0, 0)
				break
			}
			if want := n / tt.perPage; pages != want {
				t.Fatalf("read %d pages, want %d", pages, want)
			}
			t.Logf("read %d messages in %d pages in %v", n, pages, time.Since(start))
		})
	}
	t.Run("Client", func(t *testing.T) {
		var count int
		for m, err := range st.GetAll(ctx, client.Query{StartSeq: 50_001, MaxMsgs: 10_000}) {
			if err != nil {
				t.Fatal(err)
			}
			if count++; m.Seq != uint64(50_000+count) {
				t.Fatalf("GetAll() message %d has seq %d", count, m.Seq)
			}
		}
		if count != 50_000 {
			t.Fatalf("GetAll() gave %d messages, want 50000", count)
		}
	})
}

func TestGroupCommit_64Writers(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	startBroker(t, s, broker.Options{})
	st := client.New(connect(t, s.ClientURL()), client.WithTimeout(30*time.Second)).Stream("acme.gc")
	on := true
	if _, err := st.UpdateConfig(ctx, client.ConfigPatch{Sync: &on}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 64, 20
	seqs := make([][]uint64, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				ack, err := st.Set(ctx, fmt.Appendf(nil, "%d/%d", w, i))
				if err != nil {
					errs[w] = err
					return
				}
				seqs[w] = append(seqs[w], ack.Seq)
			}
		})
	}
	wg.Wait()
	t.Logf("%d synced writes from %d writers in %v", writers*each, writers, time.Since(start))
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var all []uint64
	for w, ws := range seqs {
		if !slices.IsSorted(ws) {
			t.Fatalf("writer %d got seqs out of order: %v", w, ws)
		}
		all = append(all, ws...)
	}
	slices.Sort(all)
	for i, seq := range all {
		if seq != uint64(i+1) {
			t.Fatalf("seqs are not 1..%d: position %d holds %d", writers*each, i, seq)
		}
	}
	msgs := readAll(t, st)
	if len(msgs) != writers*each {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), writers*each)
	}
}

func TestQuota_TooManyStreams(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	startBroker(t, s, broker.Options{MaxStreamsPerNamespace: 2})
	c := client.New(connect(t, s.ClientURL()))
	for _, name := range []string{"acme.a", "acme.b"} {
		if _, err := c.Stream(name).Set(ctx, nil); err != nil {
			t.Fatalf("Set(%s) error = %v", name, err)
		}
	}
	if _, err := c.Stream("acme.c").Set(ctx, nil); !errors.Is(err, subjects.ErrTooManyStreams) {
		t.Fatalf("Set(third stream) error = %v, want too_many_streams", err)
	}
	three := int64(3)
	if _, err := c.Stream("acme.c").UpdateConfig(ctx, client.ConfigPatch{MaxMsgs: &three}); !errors.Is(err, subjects.ErrTooManyStreams) {
		t.Fatalf("UpdateConfig(third stream) error = %v, want too_many_streams", err)
	}
	var perr *subjects.Error
	if _, err := c.Stream("acme.c").Set(ctx, nil); !errors.As(err, &perr) || perr.Code != 429 {
		t.Fatalf("Set(third stream) error = %v, want code 429", err)
	}
	if _, err := c.Stream("acme.a").Set(ctx, nil); err != nil {
		t.Fatalf("Set(existing stream) error = %v", err)
	}
	if _, err := c.Stream("other.a").Set(ctx, nil); err != nil {
		t.Fatalf("Set(other namespace) error = %v", err)
	}
	if err := c.Stream("acme.b").Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stream("acme.c").Set(ctx, nil); err != nil {
		t.Fatalf("Set(third stream after a destroy) error = %v", err)
	}
}

func TestQuota_Memory(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	dir := t.TempDir()
	startBroker(t, s, broker.Options{DataDir: dir, MemoryQuota: 10_000})
	c := client.New(connect(t, s.ClientURL()))
	mem := "memory"
	for _, name := range []string{"acme.m1", "acme.m2"} {
		cfg, err := c.Stream(name).UpdateConfig(ctx, client.ConfigPatch{Storage: &mem})
		if err != nil {
			t.Fatalf("UpdateConfig(%s, memory) error = %v", name, err)
		}
		if cfg.Storage != "memory" {
			t.Fatalf("storage = %q, want memory", cfg.Storage)
		}
	}
	big := make([]byte, 4000)
	if _, err := c.Stream("acme.m1").Set(ctx, big); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stream("acme.m2").Set(ctx, big); err != nil {
		t.Fatal(err)
	}
	_, err := c.Stream("acme.m1").Set(ctx, big)
	var perr *subjects.Error
	if !errors.Is(err, subjects.ErrLimitReached) || !errors.As(err, &perr) || perr.Code != 507 {
		t.Fatalf("Set(over the memory quota) error = %v, want 507 limit_reached", err)
	}
	if _, err := c.Stream("acme.file").Set(ctx, big); err != nil {
		t.Fatalf("Set(file stream) error = %v; the memory quota must not apply", err)
	}
	// Freeing memory makes room again.
	if _, err := c.Stream("acme.m2").DeleteAll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stream("acme.m1").Set(ctx, big); err != nil {
		t.Fatalf("Set() after freeing memory error = %v", err)
	}
	if files := dbFiles(t, dir); !slices.Equal(files, []string{filepath.Join("acme", "file.db")}) {
		t.Fatalf("files = %v, want only the file stream's", files)
	}
}

func TestIdle_CloseAndReopen(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	dir, backup := t.TempDir(), t.TempDir()
	startBroker(t, s, broker.Options{DataDir: dir, BackupDir: backup, IdleTimeout: 100 * time.Millisecond})
	st := client.New(connect(t, s.ClientURL())).Stream("acme.idle")
	copyPath := filepath.Join(backup, "acme", "idle.db")
	for round := 1; round <= 3; round++ {
		if _, err := st.Set(ctx, []byte(strconv.Itoa(round)), client.WithKey("k")); err != nil {
			t.Fatal(err)
		}
		// The backup copy is written when a stream is closed, so it shows
		// that the idle stream was closed.
		waitFor(t, 10*time.Second, func() bool {
			fi, err := os.Stat(copyPath)
			return err == nil && fi.Size() > 0
		})
		if err := os.Remove(copyPath); err != nil {
			t.Fatal(err)
		}
		m, err := st.GetKey(ctx, "k")
		if err != nil {
			t.Fatalf("GetKey() after reopen error = %v", err)
		}
		if m.Seq != uint64(round) || string(m.Data) != strconv.Itoa(round) {
			t.Fatalf("GetKey() after reopen = seq %d %q, want %d", m.Seq, m.Data, round)
		}
	}
	inv, err := st.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Count != 1 || inv.LastSeq != 3 || inv.Revision != 3 {
		t.Fatalf("Inventory() = %+v, want 1 message, last seq 3, revision 3", inv)
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIdle_MaxOpen(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	backup := t.TempDir()
	startBroker(t, s, broker.Options{BackupDir: backup, MaxOpen: 2})
	c := client.New(connect(t, s.ClientURL()))
	names := []string{"acme.s0", "acme.s1", "acme.s2", "acme.s3", "acme.s4"}
	for round := range 3 {
		for i, name := range names {
			ack, err := c.Stream(name).Set(ctx, []byte(name))
			if err != nil {
				t.Fatal(err)
			}
			if ack.Seq != uint64(round+1) {
				t.Fatalf("Set(%s) seq = %d in round %d, want %d", name, ack.Seq, round, round+1)
			}
			// With at most two files open, the stream written two writes
			// before this one is closed, which writes its backup copy.
			if i >= 2 || round > 0 {
				old := names[(i+len(names)-2)%len(names)]
				copyPath := filepath.Join(backup, filepath.FromSlash(strings.ReplaceAll(old, ".", "/"))+".db")
				waitFor(t, 10*time.Second, func() bool { _, err := os.Stat(copyPath); return err == nil })
				if err := os.Remove(copyPath); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, name := range names {
		if n := len(readAll(t, c.Stream(name))); n != 3 {
			t.Fatalf("%s holds %d messages, want 3", name, n)
		}
	}
}

func TestTiered_RestoreFromArchive(t *testing.T) {
	ctx := context.Background()
	s := runServer(t, -1)
	dir, archive, backup := t.TempDir(), t.TempDir(), t.TempDir()
	opts := broker.Options{DataDir: dir, ArchiveDir: archive, BackupDir: backup}
	b := startBroker(t, s, opts)
	c := client.New(connect(t, s.ClientURL()))
	st := c.Stream("acme.tiered")
	for i := range 10 {
		if _, err := st.Set(ctx, []byte(strconv.Itoa(i)), client.WithKey(fmt.Sprintf("k%d", i%4))); err != nil {
			t.Fatal(err)
		}
	}
	before, err := st.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shutdown(t, b)
	for _, root := range []string{archive, backup} {
		if files := dbFiles(t, root); !slices.Equal(files, []string{filepath.Join("acme", "tiered.db")}) {
			t.Fatalf("files under %s = %v, want acme/tiered.db", root, files)
		}
	}
	// The local directory is a cache: losing it loses nothing that was
	// archived when the stream closed.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	startBroker(t, s, opts)
	after, err := st.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Count != before.Count || after.LastSeq != before.LastSeq || after.Revision != before.Revision || after.Bytes != before.Bytes {
		t.Fatalf("Inventory() after restore = %+v, want %+v", after, before)
	}
	m, err := st.GetKey(ctx, "k1")
	if err != nil || string(m.Data) != "9" {
		t.Fatalf("GetKey(k1) after restore = %+v, %v; want 9", m, err)
	}
	if err := st.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if files := dbFiles(t, archive); len(files) != 0 {
		t.Fatalf("archive after destroy = %v, want empty", files)
	}
	if files := dbFiles(t, backup); len(files) != 1 {
		t.Fatalf("backup after destroy = %v, want the copy kept", files)
	}
}
