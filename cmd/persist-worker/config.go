package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

// maxDirLen bounds the absolute paths of --data, --archive and --backup so
// that every stream file under them (a name is at most 320 bytes) stays
// within SQLite's 512-byte path limit, with room for the -wal and temporary
// suffixes.
const maxDirLen = 160

// envPrefix starts the environment variable of every flag.
const envPrefix = "PERSIST_"

// serviceNameRegexp is what nats.go micro accepts as a service name; checked
// here so that a bad --name is a usage error, not a start-up failure.
var serviceNameRegexp = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// config is everything the command line and the environment decide.
type config struct {
	Data       string
	NATSURL    string
	Listen     string
	Prefix     string
	Name       string
	QueueGroup string

	Creds   string
	NKey    string
	TLSCA   string
	TLSCert string
	TLSKey  string

	Archive         string
	ArchiveInterval time.Duration
	Backup          string

	IdleTimeout            time.Duration
	MemoryIdleTimeout      time.Duration
	MaxOpen                int
	MemoryBudget           byteSize
	TrimDelay              time.Duration
	MaxStreamsPerNamespace int
	MaxStreams             int
	MemoryQuota            byteSize
	MaxWait                time.Duration
	ChangesWindow          int

	LogFormat       string
	LogLevel        string
	SummaryInterval time.Duration
	ShutdownTimeout time.Duration

	InstanceCheckInterval time.Duration

	Partitions partitionFlags

	// Filled in by validation.
	listenHost string
	listenPort int
	logLevel   slog.Level
}

// newFlagSet binds every flag to cfg, which holds the defaults.
func newFlagSet(cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet("persist-worker", flag.ContinueOnError)

	fs.StringVar(&cfg.Data, "data", "./persist-data", "`dir`ectory holding the stream files; created if missing")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "NATS server `url`(s) to join, comma-separated; credentials may be in the URL. Empty: run an embedded NATS server on --listen")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:4222", "`host:port` of the embedded NATS server (port 0 picks a free port); ignored with --nats-url")
	fs.StringVar(&cfg.Prefix, "prefix", subjects.DefaultPrefix, "first `token`(s) of every subject the worker serves and publishes")
	fs.StringVar(&cfg.Name, "name", "persist", "service `name` shown by 'nats micro ls'")
	fs.StringVar(&cfg.QueueGroup, "queue-group", "persist", "queue `group` of the request subscriptions. One worker serves a prefix (a second one is refused, see --instance-check-interval) unless --partitions is given, and then each partition has a plain subscription of its own: the group matters only to the requests that name no stream")
	fs.StringVar(&cfg.Creds, "nats-creds", "", "NATS credentials `file` (JWT and nkey seed) for --nats-url")
	fs.StringVar(&cfg.NKey, "nats-nkey", "", "`file` holding an nkey seed to authenticate with at --nats-url")
	fs.StringVar(&cfg.TLSCA, "tls-ca", "", "PEM `file` of the CA(s) that sign the server's certificate")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM client certificate `file` (needs --tls-key)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM client key `file` (needs --tls-cert)")
	fs.StringVar(&cfg.Archive, "archive", "", "`dir`ectory holding a second copy of every stream file, restored from when newer; empty: off")
	fs.DurationVar(&cfg.ArchiveInterval, "archive-interval", 30*time.Second, "at most one archive snapshot of a changing stream per `interval`")
	fs.StringVar(&cfg.Backup, "backup", "", "`dir`ectory receiving a copy of each stream file when it is closed; never read; empty: off")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 5*time.Second, "close a stream file unused for this `duration`")
	fs.DurationVar(&cfg.MemoryIdleTimeout, "memory-idle-timeout", 0, "drop a memory stream unused for this `duration`; 0: keep it until destroyed or the worker stops")
	fs.IntVar(&cfg.MaxOpen, "max-open", 0, "an extra cap on the stream files open at once; 0: only --memory-budget and the descriptor limit bound them (the least recently used idle stream is closed first)")
	cfg.MemoryBudget = 256 << 20
	fs.Var(&cfg.MemoryBudget, "memory-budget", "memory `bytes` open stream files may take; with the descriptor limit (RLIMIT_NOFILE, raised to its hard limit at start) it bounds how many are open")
	fs.DurationVar(&cfg.TrimDelay, "trim-delay", 2*time.Second, "after this `duration` unused, an open stream gives back the memory it does not need, before --idle-timeout closes it")
	fs.IntVar(&cfg.MaxStreamsPerNamespace, "max-streams-per-namespace", 0, "most streams in one namespace; 0: unlimited")
	fs.IntVar(&cfg.MaxStreams, "max-streams", 0, "most streams in all, memory streams included; 0: unlimited (counted from disk on the first creation, never at start-up)")
	cfg.MemoryQuota = 1 << 30
	fs.Var(&cfg.MemoryQuota, "memory-quota", "memory-stream `bytes` in all (a number, or with a suffix: 512MiB, 1GiB, 2GB)")
	fs.DurationVar(&cfg.MaxWait, "max-wait", 5*time.Second, "answer 429 overloaded, without applying it, a request that waited longer than this `duration` in the worker; 0: no bound")
	fs.IntVar(&cfg.ChangesWindow, "changes-window", subjects.DefaultChangesWindow, "least `number` of delete and config changes each stream keeps for the changes operation (a mirror further behind reads the stream again)")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log `format` on stderr: text or json")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "least log `level`: debug, info, warn or error. debug adds a line per failed request and per stream opened, trimmed or closed; info never logs a request that succeeded")
	fs.DurationVar(&cfg.SummaryInterval, "summary-interval", broker.DefaultSummaryInterval, "log a one-line summary at info (open streams, requests/s, errors, requests shed) every `interval` in which requests arrived; 0: never")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long to wait for requests in flight and for closing the streams")
	fs.DurationVar(&cfg.InstanceCheckInterval, "instance-check-interval", 10*time.Second, "how often to look for another live worker serving --prefix (also checked at start and at every reconnect); of two, the one started later stops with an error")
	addPartitionFlags(fs, &cfg.Partitions)
	return fs
}

// summaryInterval is --summary-interval as broker.Options.SummaryInterval
// takes it, where 0 is the default and a negative value off.
func (c *config) summaryInterval() time.Duration {
	if c.SummaryInterval <= 0 {
		return -1
	}
	return c.SummaryInterval
}

// maxWait is --max-wait as broker.Options.MaxWait takes it, where 0 is
// the default and a negative value no bound.
func (c *config) maxWait() time.Duration {
	if c.MaxWait <= 0 {
		return -1
	}
	return c.MaxWait
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

// validate checks every value, so that a bad one stops the worker before it
// starts anything, with a message naming the flag.
func (c *config) validate() error {
	if err := subjects.ValidatePrefix(c.Prefix); err != nil {
		return command.Usagef("invalid --prefix %q: %v", c.Prefix, err)
	}
	if !serviceNameRegexp.MatchString(c.Name) {
		return command.Usagef("invalid --name %q: use letters, digits, '-' and '_'", c.Name)
	}
	if c.QueueGroup == "" || len(c.QueueGroup) > 256 || strings.ContainsFunc(c.QueueGroup, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}) {
		return command.Usagef("invalid --queue-group %q: 1-256 bytes without spaces", c.QueueGroup)
	}

	if c.NATSURL == "" {
		host, port, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return command.Usagef("invalid --listen %q: %v", c.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > math.MaxUint16 {
			return command.Usagef("invalid --listen %q: bad port", c.Listen)
		}
		c.listenHost, c.listenPort = host, p
		for _, f := range []struct{ name, v string }{
			{"--nats-creds", c.Creds}, {"--nats-nkey", c.NKey},
			{"--tls-ca", c.TLSCA}, {"--tls-cert", c.TLSCert}, {"--tls-key", c.TLSKey},
		} {
			if f.v != "" {
				return command.Usagef("%s needs --nats-url: the embedded server takes no credentials", f.name)
			}
		}
	}
	if c.Creds != "" && c.NKey != "" {
		return command.Usagef("use either --nats-creds or --nats-nkey, not both")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return command.Usagef("--tls-cert and --tls-key go together")
	}

	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{
		{"--archive-interval", c.ArchiveInterval, 1},
		{"--idle-timeout", c.IdleTimeout, 1},
		{"--trim-delay", c.TrimDelay, 1},
		{"--memory-idle-timeout", c.MemoryIdleTimeout, 0},
		{"--summary-interval", c.SummaryInterval, 0},
		{"--shutdown-timeout", c.ShutdownTimeout, 1},
		{"--instance-check-interval", c.InstanceCheckInterval, 1},
	} {
		if d.v < d.min {
			if d.min == 0 {
				return command.Usagef("invalid %s %v: must not be negative", d.name, d.v)
			}
			return command.Usagef("invalid %s %v: must be positive", d.name, d.v)
		}
	}
	if c.MaxOpen < 0 {
		return command.Usagef("invalid --max-open %d: must not be negative (0 is no extra cap)", c.MaxOpen)
	}
	if c.MemoryBudget < 1 {
		return command.Usagef("invalid --memory-budget %v: must be positive", c.MemoryBudget)
	}
	if c.MaxStreamsPerNamespace < 0 {
		return command.Usagef("invalid --max-streams-per-namespace %d: must not be negative (0 is unlimited)", c.MaxStreamsPerNamespace)
	}
	if c.MaxStreams < 0 {
		return command.Usagef("invalid --max-streams %d: must not be negative (0 is unlimited)", c.MaxStreams)
	}
	if c.MemoryQuota < 1 {
		return command.Usagef("invalid --memory-quota %v: must be positive", c.MemoryQuota)
	}
	if c.ChangesWindow < 1 {
		return command.Usagef("invalid --changes-window %d: must be a whole number, 1 or more", c.ChangesWindow)
	}

	switch c.LogFormat {
	case "text", "json":
	default:
		return command.Usagef("invalid --log-format %q: text or json", c.LogFormat)
	}
	if err := c.logLevel.UnmarshalText([]byte(c.LogLevel)); err != nil || !validLevel(c.LogLevel) {
		return command.Usagef("invalid --log-level %q: debug, info, warn or error", c.LogLevel)
	}
	if err := c.Partitions.validate(); err != nil {
		return err
	}

	return c.validateDirs()
}

// validLevel accepts exactly the four documented names, not slog's offsets
// like "info+2".
func validLevel(s string) bool {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

// validateDirs makes the directories absolute, bounds their length and
// keeps them apart: an archive inside the data directory would show up as
// streams, and one directory used twice would overwrite its own files.
func (c *config) validateDirs() error {
	if c.Data == "" {
		return command.Usagef("--data must not be empty")
	}
	dirs := []struct {
		name string
		v    *string
	}{{"--data", &c.Data}, {"--archive", &c.Archive}, {"--backup", &c.Backup}}
	for _, d := range dirs {
		if *d.v == "" {
			continue
		}
		abs, err := filepath.Abs(*d.v)
		if err != nil {
			return command.Usagef("%s %q: %v", d.name, *d.v, err)
		}
		if len(abs) > maxDirLen {
			return command.Usagef("%s %q: absolute path is %d bytes, longer than %d; stream files under it could exceed SQLite's path limit", d.name, abs, len(abs), maxDirLen)
		}
		*d.v = abs
	}
	for i, a := range dirs {
		for _, b := range dirs[i+1:] {
			if *a.v == "" || *b.v == "" {
				continue
			}
			if within(*a.v, *b.v) || within(*b.v, *a.v) {
				return command.Usagef("%s %q and %s %q must be separate directories, neither inside the other", a.name, *a.v, b.name, *b.v)
			}
		}
	}
	return nil
}

// within reports whether path is dir or lies under it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// printUsage writes the help: every flag with its environment variable and
// default.
func printUsage(w io.Writer) {
	var cfg config
	command.PrintUsage(w, newFlagSet(&cfg), envPrefix, `Usage: persist-worker [flags]

Serves durable, SQLite-backed message streams over NATS. Without
--nats-url it runs an embedded NATS server on --listen (no authentication:
keep it on a trusted address); with --nats-url it joins that deployment.

At start it checks, before serving anything, that --data, --archive and
--backup are writable, takes an exclusive lock on --data (a second worker
on the same directory fails at once, naming the holder's pid; not with
--shared-data-dir, where each stream file is locked instead), and asks
the NATS services ($SRV.INFO) whether another live worker already serves
--prefix: if one does, it refuses to start, naming it. Two workers on one
prefix would split every stream's requests; the check is repeated every
--instance-check-interval and at every reconnect, and of two workers that
found each other late, the one started later stops.

On SIGINT/SIGTERM it answers what is in flight, closes every stream and
exits 0. With NATS unreachable nothing can be answered: it closes every
stream at once, without waiting for --shutdown-timeout, and exits 0 (every
acknowledged write is on disk; requests received but not yet applied are
not applied). Exit status: 0 stopped cleanly, 1 failed (a start-up check,
another worker on the prefix, NATS closed for good), 2 bad command line.
`)
}

// byteSize is a flag value in bytes that also takes the usual suffixes:
// K, M, G, T and KiB, MiB, GiB, TiB count in 1024s; KB, MB, GB, TB in 1000s.
type byteSize int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// Set parses a size such as 1073741824, 512MiB or 2GB.
func (b *byteSize) Set(s string) error {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("not a size in bytes (e.g. 1073741824, 512MiB, 1GiB)")
	}
	if n > math.MaxInt64/mult {
		return fmt.Errorf("size too large")
	}
	*b = byteSize(n * mult)
	return nil
}

// String formats the size with the largest binary unit that divides it.
func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
