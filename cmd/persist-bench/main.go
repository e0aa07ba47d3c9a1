package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the default handling comes back, so a second
	// Ctrl-C ends a clean-up that hangs.
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "persist-bench: %v\n", err)
		var uerr *usageError
		if errors.As(err, &uerr) {
			fmt.Fprintln(os.Stderr, "Run 'persist-bench --help' for usage.")
		}
	}
	os.Exit(exitCode(err))
}

// exitCode maps run's result to the process exit status: 0 for a complete
// run, 2 for a command line that cannot work, 1 for any other failure.
func exitCode(err error) int {
	var uerr *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &uerr):
		return 2
	default:
		return 1
	}
}

// usageError is a bad flag, flag value or environment variable: the user
// has to change the command line, so main exits 2 instead of 1.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// run is the whole command: parse args and environment, measure every op,
// print the table on stdout and remove the benchmark streams. Progress goes
// to stderr when it is a terminal. Tests call it in the test process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, os.LookupEnv)
	if errors.Is(err, errHelp) {
		printUsage(stdout)
		return nil
	}
	if err != nil {
		return err
	}
	return benchmark(ctx, cfg, stdout, stderr)
}
