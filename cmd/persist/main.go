package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"
	"text/template"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/term"

	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal the default handling comes back, so a
		// second Ctrl-C ends whatever hangs.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command: it parses args, runs the verb and returns the
// exit status (0 success, 1 a failed request, 2 a command line that cannot
// work). Tests call it, or cli.main with a fake terminal and clock, in
// the test process with the wiring main uses.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return (&cli{stdin: stdin, stdout: stdout, stderr: stderr, isTerminal: isTerminal, now: time.Now}).main(ctx, args)
}

// isTerminal reports whether f is an *os.File on a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// cli is one invocation of the command: its streams, what it asks of
// the system, its global flags and its verbs; each verb connects when it
// runs.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	isTerminal     func(any) bool   // whether a stream is a terminal
	now            func() time.Time // the clock for --since and TTLs

	conn connFlags
	json bool

	verbs map[string]func(context.Context) error
}

// terminated is what the parser's terminate hook panics with: the
// parser printed help or the version and the command ends with code.
type terminated struct{ code int }

// main parses args and runs the verb they name.
func (c *cli) main(ctx context.Context, args []string) int {
	app := c.app()
	verb, code, err := c.parse(app, args)
	if code >= 0 {
		return code
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "persist: %v\n", err)
		fmt.Fprintf(c.stderr, "Run 'persist %s--help' for usage.\n", verbPrefix(verb))
		return 2
	}
	if err := c.verbs[verb](ctx); err != nil {
		fmt.Fprintf(c.stderr, "persist: %v\n", err)
		code := command.ExitCode(err)
		if code == 2 {
			fmt.Fprintf(c.stderr, "Run 'persist %s --help' for usage.\n", verb)
		}
		return code
	}
	return 0
}

// verbPrefix is "VERB " for a parsed verb, "" for none.
func verbPrefix(verb string) string {
	if verb == "" {
		return ""
	}
	return verb + " "
}

// parse runs the parser on args. A code of 0 or more means the parser
// has finished the command itself (help, version).
func (c *cli) parse(app *kingpin.Application, args []string) (verb string, code int, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, ok := r.(terminated)
			if !ok {
				panic(r)
			}
			code = t.code
		}
	}()
	ctx, err := app.ParseContext(args)
	if ctx != nil && ctx.SelectedCommand != nil {
		verb = ctx.SelectedCommand.FullCommand()
	}
	if err != nil {
		return verb, -1, err
	}
	if verb == "" && !slices.ContainsFunc(ctx.Elements, func(e *kingpin.ParseElement) bool {
		return e.Clause == app.HelpFlag || e.Clause == app.VersionFlag
	}) {
		// No verb is a usage error: the usage goes to stderr, exit 2.
		app.UsageWriter(c.stderr)
		app.Usage(nil)
		return "", 2, nil
	}
	verb, err = app.Parse(args)
	return verb, -1, err
}

// app declares the command line: the global flags and every verb.
func (c *cli) app() *kingpin.Application {
	app := kingpin.New("persist", `Read and write persist streams: durable, SQLite-backed message streams served over NATS by a persist worker.

The connection works as it does for the nats command: --server or NATS_URL, the credentials flags, and the nats CLI's contexts (--context NAME, else the context selected with 'nats context select').

Exit status: 0 success, 1 a request failed, 2 a usage error.`)
	app.Terminate(func(code int) { panic(terminated{code}) })
	app.UsageWriter(c.stdout)
	app.ErrorWriter(c.stderr)
	app.Version(version())
	app.HelpFlag.Short('h').Help("Show help; 'persist VERB --help' shows a verb's.")
	app.UsageTemplate(usageTemplate)
	app.UsageFuncs(template.FuncMap{"FlagsToTwoColumns": flagRows})
	app.Flag("json", "Print JSON, one object per line, for scripts.").BoolVar(&c.json)
	c.conn.declare(app)
	c.verbs = map[string]func(context.Context) error{}
	for _, declare := range []func(*kingpin.Application){
		c.declareSet, c.declareGet, c.declareGetAll, c.declareDelete,
		c.declareKeys, c.declareList, c.declareInfo, c.declareConfig,
		c.declareDestroy, c.declareLocate, c.declareWorkers, c.declareWatch, c.declareChanges,
		c.declareExport, c.declareImport,
	} {
		declare(app)
	}
	return app
}

// negatable are the bool flags whose --no- form means something (the
// parser takes --no-X for every bool flag; help shows it only here).
var negatable = map[string]bool{"allow-msg-ttl": true, "sync": true, "progress": true}

// flagRows lays out the flags for help: the parser's layout, with --no-
// shown only where it is useful.
func flagRows(flags []*kingpin.FlagModel) [][2]string {
	haveShort := slices.ContainsFunc(flags, func(f *kingpin.FlagModel) bool { return f.Short != 0 })
	var rows [][2]string
	for _, f := range flags {
		if f.Hidden {
			continue
		}
		name := "--" + f.Name
		if f.IsBoolFlag() && negatable[f.Name] {
			name = "--[no-]" + f.Name
		}
		switch {
		case f.Short != 0:
			name = "-" + string(f.Short) + ", " + name
		case haveShort:
			name = "    " + name
		}
		if !f.IsBoolFlag() {
			name += "=" + f.FormatPlaceHolder()
		}
		if f.Value != nil {
			if r, ok := f.Value.(interface{ IsCumulative() bool }); ok && r.IsCumulative() {
				name += " ..."
			}
		}
		rows = append(rows, [2]string{name, f.HelpWithEnvar()})
	}
	return rows
}

// version describes the binary.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "persist (unknown version)"
	}
	return "persist " + command.Version(bi)
}

// checkStream reports a bad stream name as a usage error before anything is
// sent.
func checkStream(name string) error {
	if err := subjects.ValidateName(name); err != nil {
		return command.Usagef("stream %q: %v", name, err)
	}
	return nil
}
