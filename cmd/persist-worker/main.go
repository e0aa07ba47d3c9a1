// Command persist-worker serves durable, SQLite-backed message streams over
// NATS. Without --nats-url it runs its own embedded NATS server; with it, it
// joins an existing deployment. See the README and PROTOCOL.md for the wire
// protocol; run it with --help for the flags.
package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/nats-persist/persist/cmd/internal/command"
)

func main() {
	command.Main("persist-worker", run)
}

// run is the whole command: parse args and environment, start everything,
// serve until ctx is cancelled, then shut down in order. Tests call it in
// the test process with the same wiring main uses.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, os.LookupEnv)
	if errors.Is(err, command.ErrHelp) {
		printUsage(stdout)
		return nil
	}
	if errors.Is(err, command.ErrVersion) {
		command.PrintVersion(stdout, "persist-worker")
		return nil
	}
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stderr)
}
