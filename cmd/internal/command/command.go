package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// ErrHelp reports that --help (or -h) was asked for: the caller prints the
// usage and exits 0.
var ErrHelp = errors.New("help requested")

// ErrVersion reports that --version was asked for: the caller prints
// [PrintVersion]'s line and exits 0 ([Main] does it for a run function
// that returns the error as it is).
var ErrVersion = errors.New("version requested")

// UsageError is a bad flag, flag value or environment variable: the user has
// to change the command line, so the command exits 2 instead of 1.
type UsageError struct {
	Err error
}

// Error returns the message of the wrapped error.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef formats an error like [fmt.Errorf] and marks it a [UsageError].
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// ExitCode maps a run's result to the process exit status: 0 for success, 2
// for a command line that cannot work ([UsageError] anywhere in the chain),
// 1 for any other failure.
func ExitCode(err error) int {
	var uerr *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &uerr):
		return 2
	default:
		return 1
	}
}

// Main runs the command called name with the process arguments and standard
// streams, and exits with [ExitCode] of its result; it never returns. The
// context is cancelled on SIGINT or SIGTERM. After the first signal the
// default handling comes back, so a second Ctrl-C ends a shutdown that
// hangs.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, ErrVersion) {
		PrintVersion(os.Stdout, name)
		err = nil
	}
	os.Exit(report(os.Stderr, name, err))
}

// report writes err to w, prefixed by the command's name and followed, for
// a usage error, by where to find the usage; it returns the exit status.
func report(w io.Writer, name string, err error) int {
	if err != nil {
		fmt.Fprintf(w, "%s: %v\n", name, err)
		var uerr *UsageError
		if errors.As(err, &uerr) {
			fmt.Fprintf(w, "Run '%s --help' for usage.\n", name)
		}
	}
	return ExitCode(err)
}

// EnvName is the environment variable that sets a flag: envPrefix and the
// flag's name in upper snake case, so "nats-url" with "PERSIST_" is
// PERSIST_NATS_URL.
func EnvName(envPrefix, flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse sets the flags of fs from the environment first and from args after
// it, so a flag wins over its variable. A variable that is empty counts as
// unset, as container tools often pass them that way. It returns [ErrHelp]
// for --help or -h, [ErrVersion] for --version (neither is a flag of fs,
// so no variable sets them), and a [UsageError] for a bad variable, an
// unknown flag, a bad value or an argument that is not a flag. A bad value
// of a duration, number or boolean flag says what a valid one looks like.
// Parse silences fs's own output: the error carries the message.
func Parse(fs *flag.FlagSet, envPrefix string, args []string, lookupEnv func(string) (string, bool)) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer hintValues(fs)()
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := EnvName(envPrefix, f.Name)
		v, ok := lookupEnv(name)
		if !ok || v == "" || envErr != nil {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = Usagef("invalid value %q for environment variable %s: %v", v, name, err)
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ErrHelp
		}
		// The flag package names -version and --version alike.
		if fs.Lookup("version") == nil && err.Error() == "flag provided but not defined: -version" {
			return ErrVersion
		}
		// The flag package names flags with one dash; the documentation
		// and --help use two.
		msg := err.Error()
		for _, s := range []string{"for flag -", "for -", "not defined: -", "needs an argument: -"} {
			msg = strings.Replace(msg, s, s+"-", 1)
		}
		return Usagef("%s", msg)
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// hinted is a flag value whose Set errors say what a valid value looks
// like, where the flag package says only "parse error".
type hinted struct{ flag.Value }

func (h hinted) Set(s string) error {
	err := h.Value.Set(s)
	if err == nil {
		return nil
	}
	g, ok := h.Value.(flag.Getter)
	if !ok || err.Error() == "value out of range" {
		return err
	}
	switch g.Get().(type) {
	case time.Duration:
		return errors.New("not a duration: a number with a unit, such as 90s, 1m, 1h30m or 500ms")
	case int, int64:
		return errors.New("not a whole number, such as 0 or 100")
	case uint, uint64:
		return errors.New("not a whole number of 0 or more, such as 0 or 100")
	case float64:
		return errors.New("not a number, such as 0.5 or 100")
	case bool:
		return errors.New("use true or false")
	}
	return err
}

// IsBoolFlag keeps a boolean flag usable without a value (--sync).
func (h hinted) IsBoolFlag() bool {
	b, ok := h.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// hintValues wraps every value of fs in [hinted] and returns the function
// that puts the original values back (PrintUsage names a flag's argument
// from its value's type).
func hintValues(fs *flag.FlagSet) (restore func()) {
	var flags []*flag.Flag
	var values []flag.Value
	fs.VisitAll(func(f *flag.Flag) {
		flags, values = append(flags, f), append(values, f.Value)
		f.Value = hinted{f.Value}
	})
	return func() {
		for i, f := range flags {
			f.Value = values[i]
		}
	}
}

// PrintUsage writes the help: header (the usage line and what the command
// does), a note on the environment, then every flag of fs with its usage,
// its environment variable and its default, "" where that is empty.
func PrintUsage(w io.Writer, fs *flag.FlagSet, envPrefix, header string) {
	fmt.Fprintf(w, "%s\n\n", strings.TrimRight(header, "\n"))
	fmt.Fprint(w, `Every flag can also be set by the environment variable shown with it;
a flag given on the command line wins over its variable.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%s %s\n      %s\n      env %s, default %s\n", f.Name, arg, usage, EnvName(envPrefix, f.Name), def)
	})
	if fs.Lookup("version") == nil {
		fmt.Fprint(w, "  --version\n      print the version and exit\n")
	}
}

// PrintVersion writes the version line of the command called name: its
// [Version] from the binary's build information, and the platform.
func PrintVersion(w io.Writer, name string) {
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintf(w, "%s %s %s/%s\n", name, Version(bi), runtime.GOOS, runtime.GOARCH)
}
