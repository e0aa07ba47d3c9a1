package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// ErrHelp reports that --help (or -h) was asked for: the caller prints the
// usage and exits 0.
var ErrHelp = errors.New("help requested")

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
// for --help or -h, and a [UsageError] for a bad variable, an unknown flag,
// a bad value or an argument that is not a flag. Parse silences fs's own
// output: the error carries the message.
func Parse(fs *flag.FlagSet, envPrefix string, args []string, lookupEnv func(string) (string, bool)) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
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
}
