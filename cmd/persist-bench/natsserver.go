package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nats-persist/persist/cmd/internal/command"
)

// serveNATSMode is the hidden first argument that makes the binary a
// nats-server with JetStream, so that the server is a process of its own
// whose memory and restart time can be measured.
const serveNATSMode = "serve-nats"

// readyPrefix starts the line a serve-nats child prints on stdout once it
// accepts clients (JetStream's streams are recovered by then); its URL
// follows.
const readyPrefix = "ready "

// serverStartTimeout bounds how long a server may take to start; with 10k
// streams to recover JetStream takes tens of seconds.
const serverStartTimeout = 10 * time.Minute

// serveNATS runs a nats-server with JetStream, its store in --js-dir,
// until ctx is cancelled (SIGTERM), then shuts it down cleanly.
func serveNATS(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(serveNATSMode, flag.ContinueOnError)
	port := fs.Int("port", 0, "client `port`; 0 picks a free one")
	jsDir := fs.String("js-dir", "", "JetStream store `dir`ectory")
	syncAlways := fs.Bool("sync-always", false, "fsync every JetStream write (sync_interval: always)")
	if err := command.Parse(fs, "PERSIST_BENCH_SERVE_NATS_", args, func(string) (string, bool) { return "", false }); err != nil {
		return err
	}
	if *jsDir == "" || *port < 0 || *port > 65535 {
		return command.Usagef("%s needs --js-dir and a port 0-65535", serveNATSMode)
	}
	opts := &server.Options{
		ServerName: "persist-bench",
		Host:       "127.0.0.1",
		Port:       *port,
		NoSigs:     true,
		NoLog:      true,
		JetStream:  true,
		StoreDir:   *jsDir,
	}
	if *port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if *syncAlways {
		// What "jetstream { sync_interval: always }" sets.
		opts.SyncAlways = true
		opts.SyncInterval = 2 * time.Minute
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(serverStartTimeout) {
		s.Shutdown()
		return fmt.Errorf("nats-server not ready after %v", serverStartTimeout)
	}
	fmt.Fprintf(stdout, "%s%s\n", readyPrefix, s.ClientURL())
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
