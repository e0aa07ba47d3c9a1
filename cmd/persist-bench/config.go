package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

// Bounds of the flags, so that a typo cannot start a day-long run or
// thousands of connections.
const (
	maxDuration       = 10 * time.Minute
	maxClients        = 4096
	maxStreams        = 1024
	maxPayload        = 4096 // a setmany of 100 such messages stays far below NATS's 1 MiB
	maxTimeout        = time.Minute
	maxReps           = 100
	maxManyReps       = 10
	maxManyStreams    = 1_000_000
	maxHugeStreams    = 1_000_000
	maxMsgs           = 10_000_000
	maxIdle           = 10 * time.Minute
	maxWorkerArgs     = 64
	maxClusterStreams = 100_000
)

// envPrefix starts the environment variable of every flag.
const envPrefix = "PERSIST_BENCH_"

// knownOps are the measurements of the external mode, in the order of the
// default --ops.
var knownOps = []string{"echo", "set", "get"}

// Scenario names, the rows of the side-by-side table in the order they run.
const (
	scEcho           = "echo"
	scSet            = "set"
	scSetSync        = "set-sync"
	scSetMany        = "setmany"
	scGet            = "get"
	scGetAll         = "getall"
	scCreate         = "create"
	scRSS            = "rss"
	scRestart        = "restart"
	scSetRandom      = "set-random"
	scHuge           = "huge"
	scClusterSet     = "cluster-set"
	scClusterSetMany = "cluster-setmany"
)

var knownScenarios = []string{scEcho, scSet, scSetSync, scSetMany, scGet, scGetAll, scCreate, scRSS, scRestart, scSetRandom, scHuge, scClusterSet, scClusterSetMany}

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, " ") }

func (l *stringList) Set(s string) error {
	if len(*l) >= maxWorkerArgs {
		return fmt.Errorf("more than %d values", maxWorkerArgs)
	}
	*l = append(*l, s)
	return nil
}

// config is everything the command line and the environment decide.
type config struct {
	// Both modes.
	Prefix   string
	Clients  int
	Duration time.Duration
	Payload  int
	Keep     bool
	Timeout  time.Duration

	// The side-by-side run.
	Reps        int
	ManyReps    int
	ManyStreams int
	HugeStreams int
	GetMsgs     int
	GetAllMsgs  int
	Idle        time.Duration
	Scenarios   string
	Data        string
	Worker      string
	WorkerArgs  stringList
	JSON        bool

	// The cluster rows.
	ClusterWorkers string
	ClusterStreams int

	// The external mode: --nats-url names a running worker's server.
	NATSURL      string
	Streams      int
	Sync         bool
	OpsList      string
	StreamPrefix string

	ops       []string        // OpsList split and checked
	scenarios map[string]bool // Scenarios split and checked
	workers   []int           // ClusterWorkers split, checked and sorted
	args      []string        // the command line, for the report
}

// newFlagSet binds every flag to cfg.
func newFlagSet(cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet("persist-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.Prefix, "prefix", subjects.DefaultPrefix, "subject `prefix` the worker serves")
	fs.IntVar(&cfg.Clients, "clients", 64, fmt.Sprintf("concurrent request loops, 1-%d; they share one NATS connection per 16", maxClients))
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, fmt.Sprintf("how long each measurement runs, at most %v", maxDuration))
	fs.IntVar(&cfg.Payload, "payload", 100, fmt.Sprintf("payload `bytes` of each message, at most %d", maxPayload))
	fs.BoolVar(&cfg.Keep, "keep", false, "keep what the run wrote (streams, data directory) instead of removing it at the end")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, fmt.Sprintf("a request without a reply for this long counts as an error, at most %v", maxTimeout))

	fs.IntVar(&cfg.Reps, "reps", 2, fmt.Sprintf("repetitions of each throughput row, Persist and its peer alternating, 1-%d", maxReps))
	fs.IntVar(&cfg.ManyReps, "many-reps", 1, fmt.Sprintf("repetitions of the many-streams rows (create, rss, restart, set-random), each on fresh processes, 1-%d", maxManyReps))
	fs.IntVar(&cfg.ManyStreams, "many-streams", 10000, fmt.Sprintf("streams of the many-streams rows, 1-%d", maxManyStreams))
	fs.IntVar(&cfg.HugeStreams, "huge-streams", 100000, fmt.Sprintf("streams of the Persist-only huge row, 0-%d; 0 skips it", maxHugeStreams))
	fs.IntVar(&cfg.GetMsgs, "get-msgs", 100000, fmt.Sprintf("messages of the stream that get reads at random, 1-%d", maxMsgs))
	fs.IntVar(&cfg.GetAllMsgs, "getall-msgs", 200000, fmt.Sprintf("messages that getall replays, 1-%d", maxMsgs))
	fs.DurationVar(&cfg.Idle, "idle", 10*time.Second, fmt.Sprintf("idle time before the RSS rows read memory, at most %v", maxIdle))
	fs.StringVar(&cfg.Scenarios, "scenarios", strings.Join(knownScenarios, ","), "comma-separated `rows` to run: "+strings.Join(knownScenarios, ", "))
	fs.StringVar(&cfg.Data, "data", "./persist-bench-data", "`dir`ectory for the worker's streams, JetStream's store, logs and the built worker; use the disk under test, not a tmpfs")
	fs.StringVar(&cfg.Worker, "worker", "", "persist-worker `binary` to measure; empty: go build the one of this checkout into --data")
	fs.Var(&cfg.WorkerArgs, "worker-arg", "extra `flag` for the worker, repeatable (--worker-arg=--max-open=5000); the environment variable gives one")
	fs.BoolVar(&cfg.JSON, "json", false, "print JSON instead of the markdown table")
	fs.StringVar(&cfg.ClusterWorkers, "cluster-workers", "1,2,3", fmt.Sprintf("comma-separated `counts` of workers that the cluster rows measure, each 1-%d (the partitions)", clusterPartitions))
	fs.IntVar(&cfg.ClusterStreams, "cluster-streams", 256, fmt.Sprintf("streams of the cluster rows, one namespace each, 1-%d", maxClusterStreams))

	fs.StringVar(&cfg.NATSURL, "nats-url", "", "measure an already running worker at this NATS server `url` instead (echo, set, get only; --ops, --streams, --sync, --stream-prefix)")
	fs.IntVar(&cfg.Streams, "streams", 8, fmt.Sprintf("with --nats-url: streams written and read, 1-%d; client i uses stream i mod streams", maxStreams))
	fs.BoolVar(&cfg.Sync, "sync", false, "with --nats-url: configure the streams with sync on (fsync before every reply)")
	fs.StringVar(&cfg.OpsList, "ops", strings.Join(knownOps, ","), "with --nats-url: comma-separated `ops` to measure, in this order: echo, set, get")
	fs.StringVar(&cfg.StreamPrefix, "stream-prefix", "bench", "with --nats-url: `name` under which the benchmark streams <name>.s<N> and the echo subject live")
	return fs
}

// parseConfig fills a config from the environment and args, as
// [command.Parse] describes, and validates it.
func parseConfig(args []string, lookupEnv func(string) (string, bool)) (config, error) {
	var cfg config
	fs := newFlagSet(&cfg)
	if err := command.Parse(fs, envPrefix, args, lookupEnv); err != nil {
		return config{}, err
	}
	if err := cfg.validate(); err != nil {
		return config{}, err
	}
	cfg.args = args
	return cfg, nil
}

// intBound is one integer flag and its range.
type intBound struct {
	name     string
	v        int
	min, max int
}

// validate checks every value before anything starts.
func (c *config) validate() error {
	if err := subjects.ValidatePrefix(c.Prefix); err != nil {
		return command.Usagef("invalid --prefix %q: %v", c.Prefix, err)
	}
	for _, b := range []intBound{
		{"--clients", c.Clients, 1, maxClients},
		{"--payload", c.Payload, 0, maxPayload},
		{"--reps", c.Reps, 1, maxReps},
		{"--many-reps", c.ManyReps, 1, maxManyReps},
		{"--many-streams", c.ManyStreams, 1, maxManyStreams},
		{"--huge-streams", c.HugeStreams, 0, maxHugeStreams},
		{"--get-msgs", c.GetMsgs, 1, maxMsgs},
		{"--getall-msgs", c.GetAllMsgs, 1, maxMsgs},
		{"--streams", c.Streams, 1, maxStreams},
		{"--cluster-streams", c.ClusterStreams, 1, maxClusterStreams},
	} {
		if b.v < b.min || b.v > b.max {
			return command.Usagef("invalid %s %d: must be %d-%d", b.name, b.v, b.min, b.max)
		}
	}
	for _, d := range []struct {
		name     string
		v        time.Duration
		min, max time.Duration
	}{
		{"--duration", c.Duration, 1, maxDuration},
		{"--timeout", c.Timeout, 1, maxTimeout},
		{"--idle", c.Idle, 0, maxIdle},
	} {
		if d.v < d.min || d.v > d.max {
			return command.Usagef("invalid %s %v: must be %v-%v", d.name, d.v, d.min, d.max)
		}
	}
	if c.NATSURL != "" {
		return c.validateExternal()
	}
	if c.Data == "" {
		return command.Usagef("--data must not be empty")
	}
	abs, err := filepath.Abs(c.Data)
	if err != nil {
		return command.Usagef("--data %q: %v", c.Data, err)
	}
	c.Data = abs
	names, err := splitList(c.Scenarios, knownScenarios, "--scenarios")
	if err != nil {
		return err
	}
	c.scenarios = map[string]bool{}
	for _, n := range names {
		c.scenarios[n] = true
	}
	c.workers, err = parseWorkerCounts(c.ClusterWorkers)
	return err
}

// parseWorkerCounts splits --cluster-workers: distinct counts of 1 to
// clusterPartitions (a worker beyond would serve nothing), ascending.
func parseWorkerCounts(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > clusterPartitions {
			return nil, command.Usagef("invalid --cluster-workers %q: %q is not a count of 1-%d", list, strings.TrimSpace(f), clusterPartitions)
		}
		if slices.Contains(out, n) {
			return nil, command.Usagef("invalid --cluster-workers %q: %d given twice", list, n)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// validateExternal checks the flags of the external mode.
func (c *config) validateExternal() error {
	// The longest stream name must be valid, and the stream prefix is
	// also the first tokens of the echo subject.
	if err := subjects.ValidateName(streamName(c.StreamPrefix, c.Streams-1)); err != nil {
		return command.Usagef("invalid --stream-prefix %q: %v", c.StreamPrefix, err)
	}
	ops, err := splitList(c.OpsList, knownOps, "--ops")
	c.ops = ops
	return err
}

// splitList splits a comma-separated list of names that must be known and
// given once each.
func splitList(list string, known []string, flagName string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(known, n) {
			return nil, command.Usagef("invalid %s %q: unknown name %q (%s)", flagName, list, n, strings.Join(known, ", "))
		}
		if slices.Contains(out, n) {
			return nil, command.Usagef("invalid %s %q: %s given twice", flagName, list, n)
		}
		out = append(out, n)
	}
	return out, nil
}

// streamName is the name of benchmark stream i.
func streamName(prefix string, i int) string {
	return prefix + ".s" + strconv.Itoa(i)
}

// printUsage writes the help: every flag with its environment variable and
// default.
func printUsage(w io.Writer) {
	var cfg config
	command.PrintUsage(w, newFlagSet(&cfg), envPrefix, `Usage: persist-bench [flags]

Runs a nats-server with JetStream, a persist worker and JetStream peers as
child processes and measures Persist and JetStream side by side, Persist
and JetStream alternating, then prints a markdown table (or --json) of
medians, min-max and ratios, with the machine it ran on. The cluster rows
start three nats-servers routed as a cluster and 1, 2 and 3 workers that
share its partitions.

With --nats-url it measures an already running worker instead: echo, set
and get against that server.
`)
}
