package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	osexec "os/exec" // the package has its own exec
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-persist/persist/subjects"
)

// The crash test runs a writer in a child process (this test binary again,
// which TestMain turns into the writer when crashEnvMode is set), kills it
// with SIGKILL while it writes, and checks that every write the child saw
// acknowledged is in the reopened file and that the file is sound.

const (
	crashEnvMode = "PERSIST_STORE_CRASH_MODE"
	crashEnvPath = "PERSIST_STORE_CRASH_PATH"
)

// crashPayload is the payload of the i-th write: of varied length, some
// above the compression threshold, and recognisable.
func crashPayload(i int) []byte {
	n := 1 + i%7
	if i%11 == 0 {
		n = 300 // about 3 KiB: stored compressed
	}
	return bytes.Repeat(fmt.Appendf(nil, "payload %d;", i), n)
}

// crashWrite is the i-th write: every third is keyed with a key of its own,
// so no later write replaces it.
func crashWrite(i int) Write {
	w := Write{Data: crashPayload(i), Header: map[string][]string{"N": {strconv.Itoa(i)}}}
	if i%3 == 0 {
		w.Key = "k" + strconv.Itoa(i)
	}
	return w
}

// TestMain runs the tests, or, in the child process of TestCrash, the
// writer.
func TestMain(m *testing.M) {
	if mode := os.Getenv(crashEnvMode); mode != "" {
		crashChild(mode)
	}
	os.Exit(m.Run())
}

// crashChild is the writer of TestCrash: it appends until it is killed,
// printing each acknowledged write, and never returns.
func crashChild(mode string) {
	cfg := subjects.DefaultConfig()
	batch := 1
	if mode == "sync" {
		cfg.Sync = true
		batch = 10
	}
	s, err := Open(os.Getenv(crashEnvPath), Options{Create: true, Config: &cfg, NoSweep: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	// The parent kills this process; the deadline only stops an orphan.
	deadline := time.Now().Add(time.Minute)
	for i := 0; time.Now().Before(deadline); i += batch {
		ws := make([]Write, batch)
		for j := range ws {
			ws[j] = crashWrite(i + j)
		}
		if mode == "reopen" && i%40 == 0 && i > 0 {
			// Close leaves a small WAL beside the file, unless it is
			// large: then it checkpoints. Both are crashed into below.
			if err := s.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "close:", err)
				os.Exit(2)
			}
			if s, err = Open(os.Getenv(crashEnvPath), Options{NoSweep: true}); err != nil {
				fmt.Fprintln(os.Stderr, "reopen:", err)
				os.Exit(2)
			}
		}
		res, err := s.Append(ws)
		if err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(2)
		}
		// One write per line: a line the parent reads was acknowledged.
		var out []byte
		for j, r := range res {
			if r.Err != nil {
				fmt.Fprintln(os.Stderr, "append item:", r.Err)
				os.Exit(2)
			}
			out = fmt.Appendf(out, "ack %d %d\n", r.Seq, i+j)
		}
		if _, err := os.Stdout.Write(out); err != nil {
			os.Exit(3) // the parent is gone
		}
	}
	s.Close()
	os.Exit(4)
}

func TestCrash(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		acks    int    // acknowledged writes to wait for before the kill
		created uint64 // events of the creation: a config other than the default is one
	}{
		{"nosync", 3000, 0},
		{"reopen", 3000, 0},
		{"sync", 600, 1},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "acme", "crash.db")
			acked := crashRunChild(t, tc.mode, path, tc.acks)
			crashVerify(t, path, acked, tc.created)
		})
	}
}

// crashRunChild starts the writer, kills it after at least n acknowledged
// writes and returns every acknowledgement it printed (seq -> write index).
func crashRunChild(tb testing.TB, mode, path string, n int) map[uint64]int {
	tb.Helper()
	cmd := osexec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashEnvMode+"="+mode, crashEnvPath+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	acked := map[uint64]int{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var seq uint64
		var i int
		if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &seq, &i); err != nil {
			continue
		}
		acked[seq] = i
		if len(acked) == n && !killed {
			// SIGKILL: no deferred function, no Close, nothing flushed by
			// the process itself. The lines already in the pipe are still
			// read below: those writes were acknowledged too.
			if err := cmd.Process.Kill(); err != nil {
				tb.Fatal(err)
			}
			killed = true
		}
	}
	werr := cmd.Wait()
	if !killed {
		tb.Fatalf("child ended after %d acknowledgements: %v\n%s", len(acked), werr, stderr.String())
	}
	if !strings.Contains(fmt.Sprint(werr), "killed") {
		tb.Fatalf("child exit = %v, want killed\n%s", werr, stderr.String())
	}
	return acked
}

// crashVerify reopens the stream a killed writer left and checks it.
func crashVerify(tb testing.TB, path string, acked map[uint64]int, created uint64) {
	tb.Helper()
	s, err := Open(path, Options{NoSweep: true})
	if err != nil {
		tb.Fatalf("Open() after the crash = %v", err)
	}
	var maxSeq uint64
	for seq, i := range acked {
		maxSeq = max(maxSeq, seq)
		if seq != uint64(i)+1 {
			tb.Fatalf("write %d was acknowledged with seq %d, want %d", i, seq, i+1)
		}
		m, err := s.Get(seq)
		if err != nil {
			tb.Fatalf("acknowledged write %d: Get(%d) = %v", i, seq, err)
		}
		want := crashWrite(i)
		if !bytes.Equal(m.Data, want.Data) || m.Key != want.Key || fmt.Sprint(m.Header) != fmt.Sprint(want.Header) {
			tb.Fatalf("Get(%d) = key %q header %v data %.40q, want key %q header %v data %.40q", seq, m.Key, m.Header, m.Data, want.Key, want.Header, want.Data)
		}
	}
	if got := s.LastSeq(); got < maxSeq {
		tb.Fatalf("LastSeq() = %d, below the acknowledged %d", got, maxSeq)
	}
	// Whatever else survived (writes done but not yet acknowledged) is
	// whole and in order, and the counters agree with it.
	var n int64
	var prev uint64
	if _, err := s.Read(ReadQuery{}, func(m *Message) error {
		if m.Seq <= prev || !bytes.Equal(m.Data, crashPayload(int(m.Seq-1))) {
			return fmt.Errorf("message %d after %d with data %.40q", m.Seq, prev, m.Data)
		}
		prev = m.Seq
		n++
		return nil
	}); err != nil {
		tb.Fatalf("Read() = %v", err)
	}
	inv, err := s.Inventory()
	if err != nil {
		tb.Fatal(err)
	}
	if inv.Count != n || inv.LastSeq != prev || inv.Revision != created+prev {
		tb.Fatalf("Inventory() = %+v, want count %d, last seq %d, revision %d", inv, n, prev, created+prev)
	}
	// The stream goes on where it was.
	res, err := s.Append([]Write{{Data: []byte("after")}})
	if err != nil || res[0].Err != nil || res[0].Seq != prev+1 {
		tb.Fatalf("Append() after the crash = %+v, %v; want seq %d", res, err, prev+1)
	}
	if err := s.Close(); err != nil {
		tb.Fatalf("Close() = %v", err)
	}
	tierIntegrity(tb, path)
	tb.Logf("%d writes acknowledged, %d found", len(acked), n)
}
