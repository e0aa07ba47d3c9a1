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

// run is the whole command: parse args and environment, then either run
// the side-by-side benchmark or, with --nats-url, measure a running
// worker; the table goes to stdout. With serve-nats as the first argument
// it is instead the nats-server child of a side-by-side run. Tests call it
// in the test process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == serveNATSMode {
		return serveNATS(ctx, args[1:], stdout)
	}
	cfg, err := parseConfig(args, os.LookupEnv)
	if errors.Is(err, command.ErrHelp) {
		printUsage(stdout)
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.NATSURL != "" {
		return benchmark(ctx, cfg, stdout, stderr)
	}
	return sideBySide(ctx, cfg, stdout, stderr)
}
