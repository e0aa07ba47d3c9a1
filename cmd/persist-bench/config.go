package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

// Bounds of the flags, so that a typo cannot start an hour-long run or
// thousands of connections.
const (
	maxDuration = 10 * time.Minute
	maxClients  = 4096
	maxStreams  = 1024
	maxPayload  = 1 << 20
	maxTimeout  = time.Minute
)

// envPrefix starts the environment variable of every flag.
const envPrefix = "PERSIST_BENCH_"

// knownOps are the measurements, in the order of the default --ops.
var knownOps = []string{"echo", "set", "get"}

// config is everything the command line and the environment decide.
type config struct {
	NATSURL      string
	Prefix       string
	Clients      int
	Duration     time.Duration
	Streams      int
	Payload      int
	Sync         bool
	OpsList      string
	StreamPrefix string
	Keep         bool
	Timeout      time.Duration

	ops []string // OpsList split and checked
}

// newFlagSet binds every flag to cfg.
func newFlagSet(cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet("persist-bench", flag.ContinueOnError)
	fs.StringVar(&cfg.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server `url` where the persist worker listens")
	fs.StringVar(&cfg.Prefix, "prefix", subjects.DefaultPrefix, "subject `prefix` the worker serves")
	fs.IntVar(&cfg.Clients, "clients", 64, fmt.Sprintf("concurrent request loops, 1-%d; they share one NATS connection per 16", maxClients))
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, fmt.Sprintf("how long each op is measured, at most %v", maxDuration))
	fs.IntVar(&cfg.Streams, "streams", 8, fmt.Sprintf("streams written and read, 1-%d; client i uses stream i mod streams", maxStreams))
	fs.IntVar(&cfg.Payload, "payload", 128, fmt.Sprintf("payload `bytes` of each request, at most %d", maxPayload))
	fs.BoolVar(&cfg.Sync, "sync", false, "configure the streams with sync on (fsync before every reply)")
	fs.StringVar(&cfg.OpsList, "ops", strings.Join(knownOps, ","), "comma-separated `ops` to measure, in this order: echo, set, get")
	fs.StringVar(&cfg.StreamPrefix, "stream-prefix", "bench", "`name` under which the benchmark streams <name>.s<N> and the echo subject live")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the benchmark streams instead of destroying them at the end")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "a request without a reply for this long counts as an error")
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
	return cfg, nil
}

// validate checks every value before anything connects.
func (c *config) validate() error {
	if c.NATSURL == "" {
		return command.Usagef("--nats-url must not be empty")
	}
	if err := subjects.ValidatePrefix(c.Prefix); err != nil {
		return command.Usagef("invalid --prefix %q: %v", c.Prefix, err)
	}
	if c.Clients < 1 || c.Clients > maxClients {
		return command.Usagef("invalid --clients %d: must be 1-%d", c.Clients, maxClients)
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		return command.Usagef("invalid --duration %v: must be positive and at most %v", c.Duration, maxDuration)
	}
	if c.Streams < 1 || c.Streams > maxStreams {
		return command.Usagef("invalid --streams %d: must be 1-%d", c.Streams, maxStreams)
	}
	if c.Payload < 0 || c.Payload > maxPayload {
		return command.Usagef("invalid --payload %d: must be 0-%d bytes", c.Payload, maxPayload)
	}
	if c.Timeout <= 0 || c.Timeout > maxTimeout {
		return command.Usagef("invalid --timeout %v: must be positive and at most %v", c.Timeout, maxTimeout)
	}
	// The longest stream name must be valid, and the stream prefix is
	// also the first tokens of the echo subject.
	if err := subjects.ValidateName(streamName(c.StreamPrefix, c.Streams-1)); err != nil {
		return command.Usagef("invalid --stream-prefix %q: %v", c.StreamPrefix, err)
	}
	c.ops = c.ops[:0]
	for _, op := range strings.Split(c.OpsList, ",") {
		op = strings.TrimSpace(op)
		known := false
		for _, k := range knownOps {
			known = known || op == k
		}
		if !known {
			return command.Usagef("invalid --ops %q: unknown op %q (echo, set, get)", c.OpsList, op)
		}
		for _, seen := range c.ops {
			if seen == op {
				return command.Usagef("invalid --ops %q: %s given twice", c.OpsList, op)
			}
		}
		c.ops = append(c.ops, op)
	}
	return nil
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

Measures request/reply throughput and latency of a running persist worker,
next to a bare NATS echo responder measured with the same clients, and
prints a table on stdout.
`)
}
