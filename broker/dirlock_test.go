package broker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNew_DataDirLocked(t *testing.T) {
	s := runServer(t)
	dir := t.TempDir()
	// Different prefixes: only the directory is shared.
	first, err := New(connect(t, s), Options{DataDir: dir, Prefix: "one"})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	_, err = New(connect(t, s), Options{DataDir: dir, Prefix: "two"})
	if !errors.Is(err, ErrDataDirLocked) {
		t.Fatalf("second New() on the same data directory = %v, want ErrDataDirLocked", err)
	}
	for _, want := range []string{dir, "process " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// Nothing is left in the directory: no lock file, no probe.
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("data directory holds %v, want nothing", entries)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	// Shutdown gives the lock back.
	again, err := New(connect(t, s), Options{DataDir: dir, Prefix: "two"})
	if err != nil {
		t.Fatalf("New() after the holder's Shutdown = %v", err)
	}
	if err := again.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
}

func TestNew_FailedStartReleasesLock(t *testing.T) {
	s := runServer(t)
	dir := t.TempDir()
	// An invalid service name fails after the directory was locked.
	if _, err := New(connect(t, s), Options{DataDir: dir, Name: "bad name"}); err == nil {
		t.Fatal("New() with an invalid name succeeded")
	}
	b, err := New(connect(t, s), Options{DataDir: dir})
	if err != nil {
		t.Fatalf("New() after a failed start = %v, want the lock released", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
}

func TestNew_UnusableDirectories(t *testing.T) {
	s := runServer(t)
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := func(name string) string { return filepath.Join(tmp, name) }
	tests := []struct {
		name string
		opts Options
		want []string // parts of the error
	}{
		{"DataIsFile", Options{DataDir: file}, []string{"data directory", file}},
		{"DataUnderFile", Options{DataDir: filepath.Join(file, "d")}, []string{"data directory", file}},
		{"ArchiveIsFile", Options{DataDir: good("d1"), ArchiveDir: file}, []string{"archive directory", file}},
		{"BackupIsFile", Options{DataDir: good("d2"), BackupDir: file}, []string{"backup directory", file}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(connect(t, s), tt.opts)
			if err == nil {
				b.Shutdown(context.Background())
				t.Fatal("New() succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	if err := checkWritable("data", dir); err != nil {
		t.Fatalf("checkWritable(writable) = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("probe left %v", entries)
	}
	missing := filepath.Join(dir, "missing")
	err := checkWritable("data", missing)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("checkWritable(missing) = %v, want an error naming %s", err, missing)
	}
}
