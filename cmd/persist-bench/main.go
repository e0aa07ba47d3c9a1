package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/nats-persist/persist/cmd/internal/command"
)

func main() {
	command.Main("persist-bench", run)
}

// run is the whole command: parse args and environment, measure every op,
// print the table on stdout and remove the benchmark streams. Progress goes
// to stderr when it is a terminal. Tests call it in the test process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, os.LookupEnv)
	if errors.Is(err, command.ErrHelp) {
		printUsage(stdout)
		return nil
	}
	if err != nil {
		return err
	}
	return benchmark(ctx, cfg, stdout, stderr)
}
