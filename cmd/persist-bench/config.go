package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

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

// errHelp reports that --help was asked for; run prints the usage.
var errHelp = errors.New("help requested")

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
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
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

// envName is the environment variable that sets a flag: PERSIST_BENCH_ and
// the flag's name in upper snake case.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig reads the environment first and the arguments after it, so a
// flag wins over its variable. An empty variable counts as unset.
func parseConfig(args []string, lookupEnv func(string) (string, bool)) (config, error) {
	var cfg config
	fs := newFlagSet(&cfg)
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		v, ok := lookupEnv(name)
		if !ok || v == "" || envErr != nil {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = usagef("invalid value %q for environment variable %s: %v", v, name, err)
		}
	})
	if envErr != nil {
		return config{}, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, errHelp
		}
		msg := err.Error()
		for _, s := range []string{"for flag -", "not defined: -", "needs an argument: -"} {
			msg = strings.Replace(msg, s, s+"-", 1)
		}
		return config{}, usagef("%s", msg)
	}
	if fs.NArg() > 0 {
		return config{}, usagef("unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.validate(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// validate checks every value before anything connects.
func (c *config) validate() error {
	if c.NATSURL == "" {
		return usagef("--nats-url must not be empty")
	}
	if err := subjects.ValidatePrefix(c.Prefix); err != nil {
		return usagef("invalid --prefix %q: %v", c.Prefix, err)
	}
	if c.Clients < 1 || c.Clients > maxClients {
		return usagef("invalid --clients %d: must be 1-%d", c.Clients, maxClients)
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		return usagef("invalid --duration %v: must be positive and at most %v", c.Duration, maxDuration)
	}
	if c.Streams < 1 || c.Streams > maxStreams {
		return usagef("invalid --streams %d: must be 1-%d", c.Streams, maxStreams)
	}
	if c.Payload < 0 || c.Payload > maxPayload {
		return usagef("invalid --payload %d: must be 0-%d bytes", c.Payload, maxPayload)
	}
	if c.Timeout <= 0 || c.Timeout > maxTimeout {
		return usagef("invalid --timeout %v: must be positive and at most %v", c.Timeout, maxTimeout)
	}
	// The longest stream name must be valid, and the stream prefix is
	// also the first tokens of the echo subject.
	if err := subjects.ValidateName(streamName(c.StreamPrefix, c.Streams-1)); err != nil {
		return usagef("invalid --stream-prefix %q: %v", c.StreamPrefix, err)
	}
	c.ops = c.ops[:0]
	for _, op := range strings.Split(c.OpsList, ",") {
		op = strings.TrimSpace(op)
		known := false
		for _, k := range knownOps {
			known = known || op == k
		}
		if !known {
			return usagef("invalid --ops %q: unknown op %q (echo, set, get)", c.OpsList, op)
		}
		for _, seen := range c.ops {
			if seen == op {
				return usagef("invalid --ops %q: %s given twice", c.OpsList, op)
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
	fs := newFlagSet(&cfg)
	fmt.Fprintf(w, `Usage: persist-bench [flags]

Measures request/reply throughput and latency of a running persist worker,
next to a bare NATS echo responder measured with the same clients, and
prints a table on stdout.

Every flag can also be set by the environment variable shown with it;
a flag given on the command line wins over its variable.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s %s\n      %s\n      env %s, default %s\n", f.Name, arg, usage, envName(f.Name), f.DefValue)
	})
}
