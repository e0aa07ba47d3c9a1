package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

func TestParseWorkerCounts(t *testing.T) {
	tests := []struct {
		list string
		want []int // nil: a usage error
	}{
		{"1,2,3", []int{1, 2, 3}},
		{" 3 , 1", []int{1, 3}},
		{"8", []int{8}},
		{"0", nil},
		{"9", nil},
		{"-1", nil},
		{"1,1", nil},
		{"", nil},
		{"1,,2", nil},
		{"two", nil},
	}
	for _, tt := range tests {
		got, err := parseWorkerCounts(tt.list)
		if tt.want == nil {
			var uerr *command.UsageError
			if !errors.As(err, &uerr) {
				t.Errorf("parseWorkerCounts(%q) = %v, %v, want a usage error", tt.list, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parseWorkerCounts(%q) = %v, %v, want %v", tt.list, got, err, tt.want)
		}
	}
}

func TestParseConfig_Cluster(t *testing.T) {
	cfg, err := parseConfig(nil, fakeEnv{}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.workers, []int{1, 2, 3}) || cfg.ClusterStreams != 256 {
		t.Errorf("defaults: workers %v, cluster streams %d, want [1 2 3] and 256", cfg.workers, cfg.ClusterStreams)
	}
	cfg, err = parseConfig([]string{"--cluster-workers", "4,2", "--cluster-streams", "100000"}, fakeEnv{"PERSIST_BENCH_CLUSTER_STREAMS": "7"}.lookup)
	if err != nil || !slices.Equal(cfg.workers, []int{2, 4}) || cfg.ClusterStreams != 100000 {
		t.Errorf("parseConfig() = %v, workers %v, streams %d, want [2 4] and 100000", err, cfg.workers, cfg.ClusterStreams)
	}
	for _, args := range [][]string{
		{"--cluster-workers", "0"},
		{"--cluster-workers", "1,9"},
		{"--cluster-streams", "0"},
		{"--cluster-streams", "100001"},
	} {
		if _, err := parseConfig(args, fakeEnv{}.lookup); command.ExitCode(err) != 2 {
			t.Errorf("parseConfig(%q) = %v, want a usage error", args, err)
		}
	}
}

func TestSpreadEvenly(t *testing.T) {
	tests := []struct {
		name    string
		served  map[string][]int
		workers int
		want    bool
	}{
		{"One", map[string][]int{"a": {0, 1, 2, 3, 4, 5, 6, 7}}, 1, true},
		{"Three", map[string][]int{"a": {0, 1, 2}, "b": {3, 4, 5}, "c": {6, 7}}, 3, true},
		{"Uneven", map[string][]int{"a": {0, 1, 2, 3}, "b": {4, 5, 6}, "c": {7}}, 3, false},
		{"Missing", map[string][]int{"a": {0, 1, 2, 3}, "b": {4, 5, 6}}, 2, false},
		{"Twice", map[string][]int{"a": {0, 1, 2, 3}, "b": {3, 4, 5, 6, 7}}, 2, false},
		{"FewerWorkers", map[string][]int{"a": {0, 1, 2, 3, 4, 5, 6, 7}}, 2, false},
		{"FiveWorkers", map[string][]int{"a": {0, 1}, "b": {2, 3}, "c": {4, 5}, "d": {6, 7}, "e": nil}, 5, true},
		{"ExtraWorker", map[string][]int{"a": {0, 1, 2, 3}, "b": {4, 5, 6, 7}, "c": nil}, 2, false},
	}
	for _, tt := range tests {
		if got := spreadEvenly(tt.served, tt.workers, 8); got != tt.want {
			t.Errorf("%s: spreadEvenly(%v, %d) = %v, want %v", tt.name, tt.served, tt.workers, got, tt.want)
		}
	}
	if got, want := describeServed(map[string][]int{"x": {6, 7}, "y": {0, 1, 2}, "z": {3, 4, 5}}), "0-2 / 3-5 / 6-7"; got != want {
		t.Errorf("describeServed() = %q, want %q", got, want)
	}
}

func TestClusterRowNames(t *testing.T) {
	got := clusterRowNames([]int{1, 3})
	want := []string{"cluster-set-1", "cluster-set-3", "cluster-set-3/1", "cluster-setmany-1", "cluster-setmany-3", "cluster-setmany-3/1"}
	if !slices.Equal(got, want) {
		t.Errorf("clusterRowNames() = %q, want %q", got, want)
	}
	r := &runner{cfg: config{scenarios: map[string]bool{scClusterSetMany: true}}}
	for name, sel := range map[string]bool{"cluster-setmany-3/1": true, "cluster-set-3": false, "cluster-set-1": false} {
		if got := r.selected(name); got != sel {
			t.Errorf("selected(%s) = %v, want %v", name, got, sel)
		}
	}
}

func TestCPUUse_Add(t *testing.T) {
	a := &cpuUse{Seconds: 1, Busy: 2, NATS: 1, Workers: 0.5, Bench: 0.25}
	b := &cpuUse{Seconds: 3, Busy: 1, NATS: 0.2, Workers: 0.1, Bench: 0.1}
	got := a.add(b)
	if got.Seconds != 4 || got.Busy != 1.25 || got.NATS != 0.4 || got.rest() != 1.25-0.4-0.2-0.1375 {
		t.Errorf("add() = %+v, want the time-weighted mean", got)
	}
	a.Items, b.Items = 1000, 3000
	if got := a.add(b); got.Items != 4000 || got.perItem(got.Workers) != 200*time.Microsecond {
		t.Errorf("add() = %+v, per item %v, want 4000 items, 200µs (0.2 cores for 4 s) of the workers' CPU each", got, got.perItem(got.Workers))
	}
	for d, want := range map[time.Duration]string{8100 * time.Nanosecond: "8.1µs", 450 * time.Nanosecond: "0.5µs", 56 * time.Microsecond: "56µs", 9960 * time.Nanosecond: "10µs"} {
		if got := fmtCPUTime(d); got != want {
			t.Errorf("fmtCPUTime(%v) = %q, want %q", d, got, want)
		}
	}
	if (*cpuUse)(nil).add(b) != b || a.add(nil) != a {
		t.Errorf("add with nil does not return the other")
	}
	if runtime.GOOS != "linux" {
		return
	}
	before := readCPU(map[string][]int{"bench": {os.Getpid()}})
	for i := 0; readCPU(nil).total-before.total < 20; i++ {
		_ = strings.Repeat("x", i%1000) // burn a little CPU until the clock moves
	}
	if u := readCPU(map[string][]int{"bench": {os.Getpid()}}).since(before); u == nil || u.Busy <= 0 || u.Bench <= 0 {
		t.Errorf("since() = %+v, want busy cores and some of this process", u)
	}
}

func TestMeasureRow(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	rw := &row{Persist: &side{}, Peer: &side{}}
	groups := func() map[string][]int { return map[string][]int{"bench": {os.Getpid()}} }
	// Each measurement runs until the machine's clock has moved, so that
	// its CPU time can be read.
	busy := func(items uint64) func() result {
		return func() result {
			for start := readCPU(nil).total; readCPU(nil).total-start < 5; {
			}
			return result{items: items, ops: items, elapsed: time.Second}
		}
	}
	measureRow(rw, rw.Persist, groups, busy(100))
	measureRow(rw, rw.Peer, groups, busy(1000))
	measureRow(rw, rw.Persist, groups, busy(50))
	if rw.CPU == nil || rw.CPU.Items != 150 {
		t.Fatalf("CPU = %+v, want the 150 items of the Persist side alone", rw.CPU)
	}
	if got := len(rw.Persist.Samples) + len(rw.Peer.Samples); got != 3 || rw.Peer.Samples[0] != 1000 {
		t.Errorf("samples = %v / %v, want 2 and 1 at the items' rate", rw.Persist.Samples, rw.Peer.Samples)
	}
}

// TestSideBySide_Cluster runs the cluster rows end to end: three
// nats-server children routed with the mappings, one then three workers
// from the built binary, clients on every node.
func TestSideBySide_Cluster(t *testing.T) {
	data := filepath.Join(t.TempDir(), "bench-data")
	var stdout, stderr bytes.Buffer
	args := tinyArgs(t, data, "--json", "--keep", "--scenarios", "cluster-set,cluster-setmany", "--cluster-workers", "3,1", "--cluster-streams", "40")
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run() = %v\nstderr:\n%s", err, &stderr)
	}
	checkNoChildren(t)
	rep, rows := rowsByName(t, stdout.Bytes())
	for _, name := range clusterRowNames([]int{1, 3}) {
		rw, ok := rows[name]
		if !ok {
			t.Errorf("no %s row", name)
			continue
		}
		if rw.Persist == nil || rw.Persist.Median <= 0 {
			t.Errorf("%s: Persist = %+v, want a median > 0", name, rw.Persist)
		} else if !strings.Contains(name, "/") && len(rw.Persist.Samples) != 2 {
			t.Errorf("%s: %d samples, want 2 (--reps 2)", name, len(rw.Persist.Samples))
		}
		if strings.Contains(name, "/") && (rw.Ratio == nil || *rw.Ratio != rw.Persist.Median/rw.Peer.Median) {
			t.Errorf("%s: ratio %v, want the median over the one-worker median", name, rw.Ratio)
		}
		if !strings.Contains(name, "/") && runtime.GOOS == "linux" && (rw.CPU == nil || rw.CPU.Busy <= 0 || rw.CPU.Workers <= 0 || rw.CPU.NATS <= 0) {
			t.Errorf("%s: CPU = %+v, want busy cores, workers' and servers' shares", name, rw.CPU)
		}
		if rw.Persist != nil && rw.Persist.Errors > 0 {
			t.Logf("%s: %d errors, the first: %s", name, rw.Persist.Errors, rw.Persist.FirstError)
		}
	}
	if echo := rows["cluster-set-1"].Peer; echo == nil || echo.Median <= 0 {
		t.Errorf("cluster-set-1 peer = %+v, want the echo ceiling", echo)
	}
	if _, ok := rows[scSet]; ok {
		t.Errorf("a set row without --scenarios set")
	}
	if !slices.Equal(rep.Settings.ClusterWorkers, []int{1, 3}) || rep.Settings.ClusterStreams != 40 {
		t.Errorf("settings = %+v, want cluster workers [1 3] and 40 streams", rep.Settings)
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "3 workers: CPU ") }) {
		t.Errorf("notes = %q, want the CPU of the 3-worker rows", rep.Notes)
	}
	for _, want := range []string{"cluster: 1 worker serving the 8 partitions (0-7)", "cluster: 3 workers serving the 8 partitions (", "cluster set, 3 workers 2/2:"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, &stderr)
		}
	}

	// The requests went where the mappings say: the second and third
	// workers, which served only with three, hold the streams of
	// partitions of their own; the first, which served alone, holds all.
	parts := func(worker string) map[int]bool {
		entries, err := os.ReadDir(filepath.Join(data, "cluster", worker))
		if err != nil {
			t.Fatalf("data of %s: %v", worker, err)
		}
		got := map[int]bool{}
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), "c") {
				got[subjects.Partition(e.Name()+".s", clusterPartitions)] = true
			}
		}
		return got
	}
	all, p2, p3 := parts("worker-1"), parts("worker-2"), parts("worker-3")
	want := map[int]bool{}
	for i := range 40 {
		want[subjects.Partition(clusterStream(i), clusterPartitions)] = true
	}
	if len(all) != len(want) {
		t.Errorf("worker-1 holds streams of partitions %v, want all of %v", all, want)
	}
	if len(p2) == 0 || len(p3) == 0 || len(p2) > 3 || len(p3) > 3 {
		t.Errorf("worker-2 holds partitions %v, worker-3 %v: want a share (1-3) each", p2, p3)
	}
	for p := range p2 {
		if p3[p] {
			t.Errorf("partition %d in worker-2 and worker-3", p)
		}
	}
}
