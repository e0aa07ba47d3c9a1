package broker

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDataDirID(t *testing.T) {
	dir := t.TempDir()
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			id, err := dataDirID(dir)
			if err != nil {
				t.Errorf("dataDirID() = %v", err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	if ids[0] == "" || len(slices.Compact(slices.Clone(ids))) != 1 {
		t.Fatalf("ids of one directory made at once = %q, want one id", ids)
	}
	if again, err := dataDirID(dir); err != nil || again != ids[0] {
		t.Fatalf("dataDirID() again = %q, %v; want %q", again, err, ids[0])
	}
	if other, _ := dataDirID(t.TempDir()); other == ids[0] {
		t.Fatalf("two directories have the id %q", other)
	}
	// Only the id is left: no temporary file.
	if got := files(t, dir); !slices.Equal(got, []string{idFile}) {
		t.Errorf("directory holds %v, want only %s", got, idFile)
	}
	// Not a stream to list.
	var names []string
	if err := walkStreams(dir, "", func(n string) { names = append(names, n) }); err != nil || len(names) != 0 {
		t.Errorf("walkStreams() = %v, %v; want no stream", names, err)
	}
	for _, bad := range []string{"", "\n", "no newline", strings.Repeat("a", maxIDLen+1) + "\n", "a/b\n", "a b\n"} {
		if err := os.WriteFile(filepath.Join(dir, idFile), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if id, err := dataDirID(dir); err == nil {
			t.Errorf("id file %q read as %q, want an error", bad, id)
		}
	}
}

func TestNew_SharedDataDir(t *testing.T) {
	s := runServer(t)
	dir := t.TempDir()
	for _, p := range []Partitioning{{}, {Count: testPartitions, Static: []int{1}}} {
		_, err := New(connect(t, s), Options{DataDir: dir, SharedDataDir: true, Partitioning: p, InstanceCheckInterval: -1})
		if err == nil || !strings.Contains(err.Error(), "shared data directory needs partitions claimed through leases") {
			t.Errorf("New(SharedDataDir, %+v) = %v, want refused", p, err)
		}
	}
	// Two leasing workers on one directory: neither locks it.
	for range 2 {
		b, err := New(connect(t, s), Options{DataDir: dir, SharedDataDir: true,
			Partitioning: Partitioning{Count: testPartitions, LeaseTTL: time.Second}})
		if err != nil {
			t.Fatalf("New(SharedDataDir) = %v", err)
		}
		t.Cleanup(func() { b.Shutdown(context.Background()) })
	}
}

// TestNew_LeasesWithoutArchiveWarn: a leasing worker whose streams cannot
// move (no archive, no shared data directory) says so at start.
func TestNew_LeasesWithoutArchiveWarn(t *testing.T) {
	s := runServer(t)
	const warning = "streams do not move with their partitions"
	for _, tc := range []struct {
		name string
		opts Options
		warn bool
	}{
		{"alone", Options{}, true},
		{"archive", Options{ArchiveDir: t.TempDir()}, false},
		{"shared", Options{SharedDataDir: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			tc.opts.DataDir = t.TempDir()
			tc.opts.Logger = logs.logger()
			tc.opts.Partitioning = Partitioning{Count: testPartitions, LeaseTTL: time.Second}
			tc.opts.InstanceCheckInterval = -1
			b, err := New(connect(t, s), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Shutdown(context.Background()) })
			if got := len(logs.lines(t, warning)) > 0; got != tc.warn {
				t.Errorf("warning %q logged: %v, want %v", warning, got, tc.warn)
			}
		})
	}
}
