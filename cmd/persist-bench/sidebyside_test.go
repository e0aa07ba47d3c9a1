package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-persist/persist/cmd/internal/command"
)

// TestMain lets the test binary be the nats-server child of a side-by-side
// run, as the persist-bench binary is: the runner starts its own
// executable with serve-nats first.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == serveNATSMode {
		command.Main("persist-bench", run)
	}
	code := m.Run()
	if workerPath != "" {
		os.RemoveAll(filepath.Dir(workerPath))
	}
	os.Exit(code)
}

var (
	workerOnce sync.Once
	workerPath string
	workerErr  error
)

// workerBinary builds persist-worker once for every test that needs it.
func workerBinary(tb testing.TB) string {
	tb.Helper()
	workerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "persist-bench-worker-")
		if err != nil {
			workerErr = err
			return
		}
		workerPath = filepath.Join(dir, "persist-worker")
		out, err := exec.Command("go", "build", "-o", workerPath, "github.com/nats-persist/persist/cmd/persist-worker").CombinedOutput()
		if err != nil {
			workerErr = errors.New(string(out))
		}
	})
	if workerErr != nil {
		tb.Fatalf("go build persist-worker: %v", workerErr)
	}
	return workerPath
}

// tinyArgs is a side-by-side run small enough for CI: a few hundred
// streams, 150 ms per measurement, the cluster with one and two workers.
func tinyArgs(tb testing.TB, data string, extra ...string) []string {
	return append([]string{
		"--worker", workerBinary(tb), "--data", data, "--duration", "150ms", "--clients", "4",
		"--many-streams", "150", "--huge-streams", "1200", "--get-msgs", "500", "--getall-msgs", "2000",
		"--idle", "100ms", "--cluster-workers", "1,2", "--cluster-streams", "40",
	}, extra...)
}

// childPIDs lists the processes whose parent is this one.
func childPIDs(tb testing.TB) []int {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatalf("read /proc: %v", err)
	}
	me := strconv.Itoa(os.Getpid())
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid …; comm may hold spaces.
		_, rest, _ := strings.Cut(string(b), ") ")
		if f := strings.Fields(rest); len(f) > 1 && f[1] == me {
			pids = append(pids, pid)
		}
	}
	return pids
}

// checkNoChildren fails if a child process of the run is still there.
func checkNoChildren(tb testing.TB) {
	tb.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	if pids := childPIDs(tb); len(pids) != 0 {
		tb.Errorf("child processes left after run: %v", pids)
	}
}

// rowsByName indexes the rows of a JSON report.
func rowsByName(tb testing.TB, out []byte) (report, map[string]*row) {
	tb.Helper()
	var rep report
	if err := json.Unmarshal(out, &rep); err != nil {
		tb.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	rows := map[string]*row{}
	for _, rw := range rep.Rows {
		rows[rw.Name] = rw
	}
	return rep, rows
}

func TestSideBySide_AllRows(t *testing.T) {
	data := filepath.Join(t.TempDir(), "bench-data")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), tinyArgs(t, data, "--json"), &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v\nstderr:\n%s", err, &stderr)
	}
	checkNoChildren(t)
	rep, rows := rowsByName(t, stdout.Bytes())

	for _, name := range rowOrder {
		rw, ok := rows[name]
		if !ok {
			t.Errorf("no %s row", name)
			continue
		}
		if rw.Persist == nil || len(rw.Persist.Samples) == 0 {
			if name != scEcho {
				t.Errorf("%s: no Persist samples", name)
			}
		} else if rw.Persist.Median <= 0 {
			t.Errorf("%s: Persist median %v, want > 0", name, rw.Persist.Median)
		}
		twoSided := !strings.HasPrefix(name, "huge")
		if twoSided && (rw.Peer == nil || len(rw.Peer.Samples) == 0 || rw.Peer.Median <= 0) {
			t.Errorf("%s: peer = %+v, want samples > 0", name, rw.Peer)
		}
		if twoSided && name != scEcho && (rw.Ratio == nil || *rw.Ratio <= 0) {
			t.Errorf("%s: ratio = %v, want one > 0", name, rw.Ratio)
		}
		if _, ok := targets[name]; ok && (rw.Target == "" || rw.Met == "") {
			t.Errorf("%s: target %q met %q, want both", name, rw.Target, rw.Met)
		}
		for _, s := range []*side{rw.Persist, rw.Peer} {
			if s != nil && s.Errors > 0 {
				t.Logf("%s %s: %d errors, the first: %s", name, s.Label, s.Errors, s.FirstError)
			}
		}
	}
	for _, name := range clusterRowNames([]int{1, 2}) {
		if rw, ok := rows[name]; !ok || rw.Persist == nil || rw.Persist.Median <= 0 {
			t.Errorf("%s row = %+v, want a Persist median > 0", name, rw)
		}
	}
	if got, want := len(rows[scSet].Persist.Samples), 2; got != want {
		t.Errorf("set samples = %d, want %d (--reps 2)", got, want)
	}
	if rows[scSet].Persist.P99ms <= 0 {
		t.Errorf("set p99 = %v, want > 0", rows[scSet].Persist.P99ms)
	}
	if got := rows["set/echo"].Ratio; got == nil || *got != rows[scSet].Persist.Median/rows[scEcho].Peer.Median {
		t.Errorf("set/echo ratio = %v, want set's median over echo's", got)
	}
	if runtime.GOOS == "linux" && (rows[scSet].Persist.RSSMaxMB <= 0 || rows[scSet].Peer.RSSMaxMB <= 0) {
		t.Errorf("set row RSS = %v / %v MB, want the worker's and the server's", rows[scSet].Persist.RSSMaxMB, rows[scSet].Peer.RSSMaxMB)
	}
	if rows[scRSS].Persist.RSSEndMB <= 0 || rows[scRSS].Peer.RSSEndMB <= 0 {
		t.Errorf("rss row = %+v / %+v, want both RSS values", rows[scRSS].Persist, rows[scRSS].Peer)
	}
	m := rep.Machine
	if m.Cores <= 0 || m.GoVersion == "" || m.Date == "" || !strings.Contains(m.Command, "--json") || m.DataFS == "" || m.WorkerInfo == "" {
		t.Errorf("machine = %+v, want cores, Go version, date, command, filesystem and worker", m)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory after run: %v, want it removed", err)
	}
	if !strings.Contains(stderr.String(), "persist-bench: set 1/2:") {
		t.Errorf("stderr has no line for the set phase:\n%s", &stderr)
	}
}

func TestSideBySide_Markdown(t *testing.T) {
	data := filepath.Join(t.TempDir(), "bench-data")
	var stdout bytes.Buffer
	args := tinyArgs(t, data, "--scenarios", "echo,set", "--reps", "1", "--keep")
	if err := run(context.Background(), args, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("run() = %v", err)
	}
	checkNoChildren(t)
	out := stdout.String()
	for _, want := range []string{
		"- command: `persist-bench --worker ",
		"- machine: ",
		"| scenario | Persist | JetStream / ceiling | ratio | target | met | errors |",
		"| bare NATS request/reply (ceiling) |",
		"| `set`, one stream | ",
		"| `set`, one stream ÷ echo ceiling | ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| `getall`") {
		t.Errorf("output has a getall row without --scenarios getall:\n%s", out)
	}
	// --keep leaves the data and the logs.
	if _, err := os.Stat(filepath.Join(data, "logs")); err != nil {
		t.Errorf("logs after --keep: %v", err)
	}
}

func TestSideBySide_Interrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data := filepath.Join(t.TempDir(), "d")
	// Cancel once the set-sync phase has written to its stream, as Ctrl-C
	// would; the phase would run a minute.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			// The config request creates the file; the set loops grow it.
			var size int64
			for _, f := range []string{"sync.db", "sync.db-wal"} {
				if fi, err := os.Stat(filepath.Join(data, "main", "persist", "bench", f)); err == nil {
					size += fi.Size()
				}
			}
			if size > 256<<10 {
				cancel()
				return
			}
		}
	}()
	var stdout bytes.Buffer
	args := tinyArgs(t, data, "--json", "--reps", "1", "--duration", "1m", "--scenarios", "set-sync,get")
	err := run(ctx, args, &stdout, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) || command.ExitCode(err) != 1 {
		t.Fatalf("run() = %v, want context.Canceled and exit 1", err)
	}
	checkNoChildren(t)
	_, rows := rowsByName(t, stdout.Bytes())
	if rw, ok := rows[scSetSync]; !ok || len(rw.Persist.Samples) != 1 || len(rw.Peer.Samples) != 0 {
		t.Errorf("set-sync row = %+v, want the Persist side measured until the interrupt", rw)
	}
	if _, ok := rows[scGet]; ok {
		t.Errorf("get row present after the interrupt")
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory after an interrupted run: %v, want it removed", err)
	}
}

func TestSideBySide_BadWorker(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	// A worker that exits at once: its start is an error, not a hang.
	err := run(context.Background(), []string{"--worker", "/bin/false", "--data", data, "--scenarios", "set"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "persist-worker") {
		t.Fatalf("run() = %v, want a worker start error", err)
	}
	checkNoChildren(t)
}
