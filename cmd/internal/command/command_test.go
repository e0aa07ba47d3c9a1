package command

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
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
		wantErr string // "" for ErrHelp, "version" for ErrVersion
	}{
		{"Help", []string{"--help"}, nil, ""},
		{"Version", []string{"--version"}, nil, "version"},
		{"SingleDashVersion", []string{"-version"}, nil, "version"},
		{"VersionAfterFlag", []string{"--clients", "2", "--version"}, nil, "version"},
		{"VersionIsNoVariable", nil, env{"T_VERSION": "true"}, ""},
		{"ShortHelp", []string{"-h"}, nil, ""},
		{"HelpAfterFlag", []string{"--clients", "2", "--help"}, nil, ""},
		{"UnknownFlag", []string{"--bogus"}, nil, "flag provided but not defined: --bogus"},
		{"UnknownSingleDash", []string{"-bogus"}, nil, "flag provided but not defined: --bogus"},
		{"NeedsArgument", []string{"--clients"}, nil, "flag needs an argument: --clients"},
		{"BadValue", []string{"--clients", "x"}, nil, `invalid value "x" for flag --clients: not a whole number, such as 0 or 100`},
		{"OutOfRange", []string{"--clients", "99999999999999999999"}, nil, `invalid value "99999999999999999999" for flag --clients: value out of range`},
		{"BadDuration", []string{"--wait", "5"}, nil, `invalid value "5" for flag --wait: not a duration: a number with a unit, such as 90s, 1m, 1h30m or 500ms`},
		{"BadBool", []string{"--sync=maybe"}, nil, `invalid boolean value "maybe" for --sync: use true or false`},
		{"ExtraArgument", []string{"--clients", "2", "extra"}, nil, `unexpected argument "extra"`},
		{"BadEnv", nil, env{"T_WAIT": "soon"}, `invalid value "soon" for environment variable T_WAIT: not a duration: a number with a unit, such as 90s, 1m, 1h30m or 500ms`},
		{"BadEnvBeforeFlags", []string{"--bogus"}, env{"T_CLIENTS": "many"}, `invalid value "many" for environment variable T_CLIENTS: not a whole number, such as 0 or 100`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v values
			fs := testFlagSet(t, &v)
			var out bytes.Buffer
			fs.SetOutput(&out)
			err := Parse(fs, "T_", tt.args, tt.env.lookup)
			switch {
			case tt.name == "VersionIsNoVariable":
				if err != nil {
					t.Fatalf("Parse(env T_VERSION) = %v, want nil", err)
				}
			case tt.wantErr == "version":
				if err != ErrVersion {
					t.Fatalf("Parse(%q) = %v, want ErrVersion", tt.args, err)
				}
			case tt.wantErr == "":
				if err != ErrHelp {
					t.Fatalf("Parse(%q) = %v, want ErrHelp", tt.args, err)
				}
			default:
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

// TestParse_KeepsValues checks that Parse gives the flag set its own
// values back, so that a bool flag still takes no argument and the usage
// still names each flag's argument from its type.
func TestParse_KeepsValues(t *testing.T) {
	var v values
	fs := testFlagSet(t, &v)
	if err := Parse(fs, "T_", []string{"--sync", "--wait", "2s"}, env{}.lookup); err != nil {
		t.Fatal(err)
	}
	if !v.Sync || v.Wait != 2*time.Second {
		t.Fatalf("Parse set %+v", v)
	}
	if _, ok := fs.Lookup("wait").Value.(hinted); ok {
		t.Fatalf("Parse left the wrapped value in the flag set")
	}
}

func TestPrintVersion(t *testing.T) {
	var w bytes.Buffer
	PrintVersion(&w, "cmd")
	got := w.String()
	bi, _ := debug.ReadBuildInfo()
	want := "cmd " + Version(bi) + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if got != want {
		t.Fatalf("PrintVersion() wrote %q, want %q", got, want)
	}
	if !strings.Contains(got, runtime.Version()) {
		t.Fatalf("PrintVersion() wrote %q, without the Go version %s", got, runtime.Version())
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
  --version
      print the version and exit
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
