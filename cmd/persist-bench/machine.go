package main

import (
	"debug/buildinfo"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nats-persist/persist/cmd/internal/command"
)

// machine is where and with what a run was measured, printed above the
// table and in the JSON.
type machine struct {
	Date       string `json:"date"`
	Command    string `json:"command"`
	CPU        string `json:"cpu"`
	Cores      int    `json:"cores"`
	MemoryMB   int64  `json:"memory_mb"`
	Kernel     string `json:"kernel"`
	OS         string `json:"os"`
	GoVersion  string `json:"go_version"`
	Worker     string `json:"worker"`
	WorkerInfo string `json:"worker_version"`
	DataDir    string `json:"data_dir"`
	DataFS     string `json:"data_fs"`
	LoadStart  string `json:"load_start"`
	LoadEnd    string `json:"load_end,omitempty"`
}

func describeMachine(args []string, worker, dataDir string) machine {
	return machine{
		Date:       time.Now().UTC().Format(time.RFC3339),
		Command:    commandLine(args),
		CPU:        cpuModel(),
		Cores:      runtime.NumCPU(),
		MemoryMB:   memTotal() >> 20,
		Kernel:     firstLine("/proc/sys/kernel/osrelease"),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
		GoVersion:  runtime.Version(),
		Worker:     worker,
		WorkerInfo: binaryVersion(worker),
		DataDir:    dataDir,
		DataFS:     filesystem(dataDir),
		LoadStart:  loadAvg(),
	}
}

// commandLine is the command as typed, quoted where a shell would need it.
func commandLine(args []string) string {
	parts := []string{"persist-bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(s)
}

// loadAvg is the 1, 5 and 15 minute load average, to judge how busy the
// machine was.
func loadAvg() string {
	f := strings.Fields(firstLine("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// memTotal is the machine's memory in bytes from /proc/meminfo, 0 if
// unknown.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// filesystem names the type and device of the mount that holds dir, from
// /proc/self/mountinfo: the mount point that is the longest prefix of it.
func filesystem(dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "unknown"
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	best, fs := "", "unknown"
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options ... - type source superopts
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		mp := f[4]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, fs = mp, g[0]+" on "+g[1]+" (mounted at "+mp+")"
		}
	}
	return fs
}

// binaryVersion is the module version, VCS revision and Go version
// stamped into the Go binary at path, as far as it has them.
func binaryVersion(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return command.Version(bi)
}
