package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/cmd/internal/command"
)

// fakeEnv is a fake environment for parseConfig.
type fakeEnv map[string]string

func (e fakeEnv) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// startWorker runs an embedded NATS server and a broker on it, and returns
// the server's URL and a client connection.
func startWorker(tb testing.TB) (string, *nats.Conn) {
	tb.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		tb.Fatalf("NewServer() = %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(s.Shutdown)
	bnc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("nats.Connect() = %v", err)
	}
	tb.Cleanup(bnc.Close)
	b, err := broker.New(bnc, broker.Options{DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("broker.New() = %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown() = %v", err)
		}
	})
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("nats.Connect() = %v", err)
	}
	tb.Cleanup(nc.Close)
	return s.ClientURL(), nc
}

// tableRow is one line of the result table of the external mode.
type tableRow struct {
	clients, ops, errors int
	p50, p99             string
}

// parseTable finds the rows of the result table by their op name.
func parseTable(tb testing.TB, out string) map[string]tableRow {
	tb.Helper()
	rows := map[string]tableRow{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 7 || (f[0] != "echo" && f[0] != "set" && f[0] != "get") {
			continue
		}
		var r tableRow
		var err error
		for _, x := range []struct {
			s string
			v *int
		}{{f[1], &r.clients}, {f[2], &r.ops}, {f[6], &r.errors}} {
			if *x.v, err = strconv.Atoi(x.s); err != nil {
				tb.Fatalf("row %q: %v", line, err)
			}
		}
		r.p50, r.p99 = f[4], f[5]
		rows[f[0]] = r
	}
	return rows
}

// listStreams returns the streams under prefix.
func listStreams(tb testing.TB, nc *nats.Conn, prefix string) []string {
	tb.Helper()
	m, err := nc.Request("persist.api.list."+prefix, nil, 5*time.Second)
	if err != nil {
		tb.Fatalf("list: %v", err)
	}
	var reply struct {
		Streams []string `json:"streams"`
	}
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		tb.Fatalf("list reply %q: %v", m.Data, err)
	}
	return reply.Streams
}

func TestRun_AllOps(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run("Sync="+strconv.FormatBool(sync), func(t *testing.T) {
			url, nc := startWorker(t)
			args := []string{"--nats-url", url, "--duration", "300ms", "--clients", "4", "--streams", "3", "--payload", "64"}
			if sync {
				args = append(args, "--sync")
			}
			var stdout, stderr bytes.Buffer
			if err := run(context.Background(), args, &stdout, &stderr); err != nil {
				t.Fatalf("run() = %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
			}
			out := stdout.String()
			rows := parseTable(t, out)
			for _, op := range []string{"echo", "set", "get"} {
				r, ok := rows[op]
				if !ok {
					t.Fatalf("no %s row in\n%s", op, out)
				}
				if r.clients != 4 || r.ops <= 0 || r.errors != 0 || r.p50 == "-" || r.p99 == "-" {
					t.Errorf("%s row = %+v, want 4 clients, ops > 0, 0 errors, latencies", op, r)
				}
			}
			if !strings.Contains(out, "\nmachine: ") {
				t.Errorf("no machine line in\n%s", out)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr = %q, want nothing when it is not a terminal", &stderr)
			}
			if got := listStreams(t, nc, "bench"); len(got) != 0 {
				t.Errorf("streams after run = %q, want none", got)
			}
		})
	}
}

func TestRun_GetWithoutSet(t *testing.T) {
	url, nc := startWorker(t)
	var stdout bytes.Buffer
	args := []string{"--nats-url", url, "--duration", "200ms", "--clients", "2", "--ops", "get", "--stream-prefix", "b2", "--keep"}
	if err := run(context.Background(), args, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("run() = %v\n%s", err, &stdout)
	}
	rows := parseTable(t, stdout.String())
	if r, ok := rows["get"]; !ok || r.ops <= 0 || r.errors != 0 {
		t.Errorf("get row = %+v (found %v), want ops > 0 and 0 errors\n%s", r, ok, &stdout)
	}
	if _, ok := rows["set"]; ok {
		t.Errorf("set row present without set in --ops")
	}
	// --keep leaves the streams, each filled before the reads.
	if got, want := len(listStreams(t, nc, "b2")), 8; got != want {
		t.Errorf("streams after --keep run = %d, want %d", got, want)
	}
}

func TestRun_ErrorsCounted(t *testing.T) {
	url, nc := startWorker(t)
	// A stream limited to tiny messages refuses every set with 413.
	m, err := nc.Request("persist.api.config.e.s0", []byte(`{"max_msg_size":1}`), 5*time.Second)
	if err != nil || m.Header.Get(errorCodeHeader) != "" {
		t.Fatalf("config: %v %v", err, m)
	}
	var stdout bytes.Buffer
	args := []string{"--nats-url", url, "--duration", "200ms", "--clients", "1", "--streams", "1", "--ops", "set", "--stream-prefix", "e"}
	if err := run(context.Background(), args, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("run() = %v", err)
	}
	r := parseTable(t, stdout.String())["set"]
	if r.ops != 0 || r.errors <= 0 {
		t.Errorf("set row = %+v, want 0 ops and errors > 0\n%s", r, &stdout)
	}
	if !strings.Contains(stdout.String(), "error reply 413") {
		t.Errorf("output does not name the first error:\n%s", &stdout)
	}
}

func TestRun_NoWorker(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	err = run(context.Background(), []string{"--nats-url", s.ClientURL(), "--ops", "set", "--duration", "100ms"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no persist worker") {
		t.Fatalf("run() = %v, want a no-worker error", err)
	}
	if got, want := command.ExitCode(err), 1; got != want {
		t.Errorf("command.ExitCode() = %d, want %d", got, want)
	}
}

func TestParseConfig_BadFlags(t *testing.T) {
	ext := func(args ...string) []string { return append([]string{"--nats-url", "nats://h:1"}, args...) }
	tests := []struct {
		name string
		args []string
		env  fakeEnv
	}{
		{"ZeroClients", []string{"--clients", "0"}, nil},
		{"TooManyClients", []string{"--clients", "4097"}, nil},
		{"LongDuration", []string{"--duration", "11m"}, nil},
		{"ZeroDuration", []string{"--duration", "0s"}, nil},
		{"BigPayload", []string{"--payload", "4097"}, nil},
		{"NegativePayload", []string{"--payload", "-1"}, nil},
		{"ZeroReps", []string{"--reps", "0"}, nil},
		{"TooManyReps", []string{"--reps", "101"}, nil},
		{"ZeroManyReps", []string{"--many-reps", "0"}, nil},
		{"TooManyManyReps", []string{"--many-reps", "11"}, nil},
		{"ZeroManyStreams", []string{"--many-streams", "0"}, nil},
		{"HugeManyStreams", []string{"--many-streams", "1000001"}, nil},
		{"NegativeHugeStreams", []string{"--huge-streams", "-1"}, nil},
		{"TooManyHugeStreams", []string{"--huge-streams", "1000001"}, nil},
		{"ZeroGetMsgs", []string{"--get-msgs", "0"}, nil},
		{"TooManyGetAllMsgs", []string{"--getall-msgs", "10000001"}, nil},
		{"NegativeIdle", []string{"--idle", "-1s"}, nil},
		{"LongIdle", []string{"--idle", "11m"}, nil},
		{"LongTimeout", []string{"--timeout", "2m"}, nil},
		{"UnknownScenario", []string{"--scenarios", "echo,put"}, nil},
		{"DuplicateScenario", []string{"--scenarios", "set,set"}, nil},
		{"EmptyScenarios", []string{"--scenarios", ""}, nil},
		{"EmptyData", []string{"--data", ""}, nil},
		{"ZeroStreams", ext("--streams", "0"), nil},
		{"UnknownOp", ext("--ops", "echo,put"), nil},
		{"DuplicateOp", ext("--ops", "set,set"), nil},
		{"EmptyOps", ext("--ops", ""), nil},
		{"BadStreamPrefix", ext("--stream-prefix", "a b"), nil},
		{"WildcardStreamPrefix", ext("--stream-prefix", "a.*"), nil},
		{"BadPrefix", []string{"--prefix", "a.>"}, nil},
		{"UnknownFlag", []string{"--bogus"}, nil},
		{"ExtraArg", []string{"extra"}, nil},
		{"BadEnv", nil, fakeEnv{"PERSIST_BENCH_CLIENTS": "many"}},
		{"EnvOutOfRange", nil, fakeEnv{"PERSIST_BENCH_DURATION": "1h"}},
		{"EnvBadScenario", nil, fakeEnv{"PERSIST_BENCH_SCENARIOS": "nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, tt.env.lookup)
			var uerr *command.UsageError
			if !errors.As(err, &uerr) {
				t.Fatalf("parseConfig(%q) = %v, want a usage error", tt.args, err)
			}
			if got, want := command.ExitCode(err), 2; got != want {
				t.Errorf("command.ExitCode() = %d, want %d", got, want)
			}
		})
	}
}

func TestParseConfig_Bounds(t *testing.T) {
	// The ends of every range are accepted.
	for _, args := range [][]string{
		{"--clients", "1", "--payload", "0", "--reps", "1", "--many-reps", "1", "--many-streams", "1", "--huge-streams", "0", "--idle", "0s", "--get-msgs", "1", "--getall-msgs", "1"},
		{"--clients", "4096", "--payload", "4096", "--reps", "100", "--many-reps", "10", "--many-streams", "1000000", "--huge-streams", "1000000", "--duration", "10m", "--idle", "10m", "--timeout", "1m"},
		{"--scenarios", " huge , echo"},
	} {
		if _, err := parseConfig(args, fakeEnv{}.lookup); err != nil {
			t.Errorf("parseConfig(%q) = %v, want no error", args, err)
		}
	}
}

func TestRun_BadFlag(t *testing.T) {
	err := run(context.Background(), []string{"--clients", "0"}, &bytes.Buffer{}, &bytes.Buffer{})
	if got, want := command.ExitCode(err), 2; got != want {
		t.Fatalf("run(--clients 0) = %v, exit %d, want %d", err, got, want)
	}
}

func TestParseConfig_Env(t *testing.T) {
	cfg, err := parseConfig([]string{"--clients", "7", "--worker-arg", "--max-open=10"}, fakeEnv{
		"PERSIST_BENCH_CLIENTS":       "3",
		"PERSIST_BENCH_NATS_URL":      "nats://h:1",
		"PERSIST_BENCH_SYNC":          "true",
		"PERSIST_BENCH_OPS":           "get,echo",
		"PERSIST_BENCH_STREAM_PREFIX": "x.y",
		"PERSIST_BENCH_PAYLOAD":       "",
		"PERSIST_BENCH_REPS":          "4",
		"PERSIST_BENCH_WORKER_ARG":    "--idle-timeout=1s",
		"PERSIST_BENCH_JSON":          "true",
	}.lookup)
	if err != nil {
		t.Fatalf("parseConfig() = %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Clients", cfg.Clients, 7},
		{"NATSURL", cfg.NATSURL, "nats://h:1"},
		{"Sync", cfg.Sync, true},
		{"ops", strings.Join(cfg.ops, ","), "get,echo"},
		{"StreamPrefix", cfg.StreamPrefix, "x.y"},
		{"Payload", cfg.Payload, 100},
		{"Duration", cfg.Duration, 5 * time.Second},
		{"Streams", cfg.Streams, 8},
		{"Reps", cfg.Reps, 4},
		{"ManyReps", cfg.ManyReps, 1},
		{"ManyStreams", cfg.ManyStreams, 10000},
		{"HugeStreams", cfg.HugeStreams, 100000},
		{"JSON", cfg.JSON, true},
		{"WorkerArgs", strings.Join(cfg.WorkerArgs, " "), "--idle-timeout=1s --max-open=10"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseConfig_Defaults(t *testing.T) {
	cfg, err := parseConfig(nil, fakeEnv{}.lookup)
	if err != nil {
		t.Fatalf("parseConfig() = %v", err)
	}
	if got, want := filepath.Base(cfg.Data), "persist-bench-data"; !filepath.IsAbs(cfg.Data) || got != want {
		t.Errorf("Data = %q, want an absolute path ending in %q", cfg.Data, want)
	}
	for _, sc := range knownScenarios {
		if !cfg.scenarios[sc] {
			t.Errorf("scenario %s not selected by default", sc)
		}
	}
}

// TestNewFlagSet_EveryFlagHasEnv checks that --help names every flag's
// environment variable.
func TestNewFlagSet_EveryFlagHasEnv(t *testing.T) {
	var stdout bytes.Buffer
	printUsage(&stdout)
	var cfg config
	newFlagSet(&cfg).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(stdout.String(), "--"+f.Name+" ") || !strings.Contains(stdout.String(), command.EnvName(envPrefix, f.Name)) {
			t.Errorf("help lacks --%s or its variable", f.Name)
		}
	})
}

func TestRun_Help(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("run(--help) = %v", err)
	}
	for _, want := range []string{"--clients", "PERSIST_BENCH_CLIENTS", "--stream-prefix", "--keep"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestHistogram_Quantile(t *testing.T) {
	var h histogram
	if got := h.quantile(0.5); got != 0 {
		t.Errorf("empty quantile = %v, want 0", got)
	}
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * 10 * time.Microsecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := h.quantile(tt.q)
		if diff := got - tt.want; diff < -tt.want/50 || diff > tt.want/50 {
			t.Errorf("quantile(%v) = %v, want %v within 2%%", tt.q, got, tt.want)
		}
	}
	var small histogram
	small.add(37 * time.Microsecond)
	if got, want := small.quantile(0.99), 37*time.Microsecond; got != want {
		t.Errorf("quantile of one 37µs = %v, want %v", got, want)
	}
	var huge histogram
	huge.add(time.Hour)
	if got := huge.quantile(1); got < time.Minute {
		t.Errorf("quantile of one hour = %v, want the last bucket (over a minute)", got)
	}
}

func TestRun_Interrupted(t *testing.T) {
	url, nc := startWorker(t)
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel once the set phase has written something, as Ctrl-C would.
	sub, err := nc.SubscribeSync("persist.ev.bench.>")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if _, err := sub.NextMsg(10 * time.Second); err == nil {
			cancel()
		}
	}()
	var stdout bytes.Buffer
	err = run(ctx, []string{"--nats-url", url, "--duration", "1m", "--clients", "2", "--ops", "set,get"}, &stdout, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) || command.ExitCode(err) != 1 {
		t.Fatalf("run() = %v, want context.Canceled and exit 1", err)
	}
	rows := parseTable(t, stdout.String())
	if r, ok := rows["set"]; !ok || r.ops <= 0 {
		t.Errorf("set row = %+v (found %v), want the ops measured before the interrupt\n%s", r, ok, &stdout)
	}
	if _, ok := rows["get"]; ok {
		t.Errorf("get row present after the interrupt\n%s", &stdout)
	}
	if got := listStreams(t, nc, "bench"); len(got) != 0 {
		t.Errorf("streams after interrupted run = %q, want none", got)
	}
}
