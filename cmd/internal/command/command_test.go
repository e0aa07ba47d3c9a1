package command

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"testing"
	"time"
)

// env is a fake environment for Parse.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// values are the flags of testFlagSet.
type values struct {
	URL     string
	Clients int
	Wait    time.Duration
	Sync    bool
}

// testFlagSet binds a flag of each kind the commands use to v.
func testFlagSet(tb testing.TB, v *values) *flag.FlagSet {
	tb.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.StringVar(&v.URL, "nats-url", "", "server `url`")
	fs.IntVar(&v.Clients, "clients", 4, "request loops")
	fs.DurationVar(&v.Wait, "wait", time.Second, "how long to wait")
	fs.BoolVar(&v.Sync, "sync", false, "fsync every write")
	return fs
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"Nil", nil, 0},
		{"Usage", Usagef("bad %s", "flag"), 2},
		{"WrappedUsage", fmt.Errorf("config: %w", Usagef("bad")), 2},
		{"Other", errors.New("boom"), 1},
		{"Help", ErrHelp, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitCode(tt.err); got != tt.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestUsagef(t *testing.T) {
	inner := errors.New("inner")
	err := Usagef("invalid --x %q: %w", "v", inner)
	if got, want := err.Error(), `invalid --x "v": inner`; got != want {
		t.Errorf("Usagef().Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, inner) {
		t.Errorf("errors.Is(Usagef(... %%w), inner) = false, want true")
	}
}

func TestReport(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantOut  string
		wantCode int
	}{
		{"Nil", nil, "", 0},
		{"Usage", Usagef("unexpected argument %q", "x"), "cmd: unexpected argument \"x\"\nRun 'cmd --help' for usage.\n", 2},
		{"Other", errors.New("connection refused"), "cmd: connection refused\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w bytes.Buffer
			if got := report(&w, "cmd", tt.err); got != tt.wantCode {
				t.Errorf("report() = %d, want %d", got, tt.wantCode)
			}
			if got := w.String(); got != tt.wantOut {
				t.Errorf("report() wrote %q, want %q", got, tt.wantOut)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	tests := []struct{ prefix, flag, want string }{
		{"PERSIST_", "nats-url", "PERSIST_NATS_URL"},
		{"PERSIST_", "max-streams-per-namespace", "PERSIST_MAX_STREAMS_PER_NAMESPACE"},
		{"PERSIST_BENCH_", "clients", "PERSIST_BENCH_CLIENTS"},
		{"PERSIST_BENCH_", "stream-prefix", "PERSIST_BENCH_STREAM_PREFIX"},
	}
	for _, tt := range tests {
		if got := EnvName(tt.prefix, tt.flag); got != tt.want {
			t.Errorf("EnvName(%q, %q) = %q, want %q", tt.prefix, tt.flag, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  env
		want values
	}{
		{"Defaults", nil, nil, values{Clients: 4, Wait: time.Second}},
		{"Flags", []string{"--nats-url", "nats://h:1", "--clients=7", "-sync"}, nil, values{URL: "nats://h:1", Clients: 7, Wait: time.Second, Sync: true}},
		{"Env", nil, env{"T_CLIENTS": "3", "T_WAIT": "5s", "T_SYNC": "true"}, values{Clients: 3, Wait: 5 * time.Second, Sync: true}},
		{"FlagWinsOverEnv", []string{"--clients", "9"}, env{"T_CLIENTS": "3"}, values{Clients: 9, Wait: time.Second}},
		{"EmptyEnvIsUnset", nil, env{"T_CLIENTS": "", "T_NATS_URL": ""}, values{Clients: 4, Wait: time.Second}},
		{"OtherPrefixIgnored", nil, env{"CLIENTS": "3", "X_CLIENTS": "5"}, values{Clients: 4, Wait: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v values
			if err := Parse(testFlagSet(t, &v), "T_", tt.args, tt.env.lookup); err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.args, err)
			}
			if v != tt.want {
				t.Errorf("Parse(%q) set %+v, want %+v", tt.args, v, tt.want)
			}
		})
	}
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     env
		wantErr string // "" for ErrHelp
	}{
		{"Help", []string{"--help"}, nil, ""},
		{"ShortHelp", []string{"-h"}, nil, ""},
		{"HelpAfterFlag", []string{"--clients", "2", "--help"}, nil, ""},
		{"UnknownFlag", []string{"--bogus"}, nil, "flag provided but not defined: --bogus"},
		{"UnknownSingleDash", []string{"-bogus"}, nil, "flag provided but not defined: --bogus"},
		{"NeedsArgument", []string{"--clients"}, nil, "flag needs an argument: --clients"},
		{"BadValue", []string{"--clients", "x"}, nil, `invalid value "x" for flag --clients: parse error`},
		{"BadBool", []string{"--sync=maybe"}, nil, `invalid boolean value "maybe" for --sync: parse error`},
		{"ExtraArgument", []string{"--clients", "2", "extra"}, nil, `unexpected argument "extra"`},
		{"BadEnv", nil, env{"T_WAIT": "soon"}, `invalid value "soon" for environment variable T_WAIT: parse error`},
		{"BadEnvBeforeFlags", []string{"--bogus"}, env{"T_CLIENTS": "many"}, `invalid value "many" for environment variable T_CLIENTS: parse error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v values
			fs := testFlagSet(t, &v)
			var out bytes.Buffer
			fs.SetOutput(&out)
			err := Parse(fs, "T_", tt.args, tt.env.lookup)
			if tt.wantErr == "" {
				if err != ErrHelp {
					t.Fatalf("Parse(%q) = %v, want ErrHelp", tt.args, err)
				}
			} else {
				var uerr *UsageError
				if !errors.As(err, &uerr) {
					t.Fatalf("Parse(%q) = %v, want a usage error", tt.args, err)
				}
				if got := err.Error(); got != tt.wantErr {
					t.Errorf("Parse(%q) error = %q, want %q", tt.args, got, tt.wantErr)
				}
			}
			if out.Len() > 0 {
				t.Errorf("Parse(%q) let the flag set write %q", tt.args, &out)
			}
		})
	}
}

func TestPrintUsage(t *testing.T) {
	const want = `Usage: test [flags]

Does a thing.

Every flag can also be set by the environment variable shown with it;
a flag given on the command line wins over its variable.

Flags:
  --clients int
      request loops
      env T_CLIENTS, default 4
  --nats-url url
      server url
      env T_NATS_URL, default ""
  --sync 
      fsync every write
      env T_SYNC, default false
  --wait duration
      how long to wait
      env T_WAIT, default 1s
`
	for _, header := range []string{"Usage: test [flags]\n\nDoes a thing.\n", "Usage: test [flags]\n\nDoes a thing."} {
		var v values
		var w bytes.Buffer
		PrintUsage(&w, testFlagSet(t, &v), "T_", header)
		if got := w.String(); got != want {
			t.Errorf("PrintUsage(header %q) wrote\n%s\nwant\n%s", header, got, want)
		}
	}
}
