package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
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

// clusterName is the name of the NATS cluster of the cluster rows.
const clusterName = "persist-bench"

// serveOptions are the flags of the serve-nats mode.
type serveOptions struct {
	port       int
	jsDir      string
	syncAlways bool

	// A node of a cluster: its name, its route port, the routes to every
	// node (itself included, as testdata/cluster lists them), and the
	// partition mappings of prefix (subjects.PartitionMappings) in the
	// global account, where the bench's clients and workers are.
	name        string
	clusterPort int
	routes      string
	partitions  int
	prefix      string
}

// parseServeOptions reads the serve-nats flags; they come from the bench
// itself, so no environment variable sets them.
func parseServeOptions(args []string) (serveOptions, error) {
	var o serveOptions
	fs := flag.NewFlagSet(serveNATSMode, flag.ContinueOnError)
	fs.IntVar(&o.port, "port", 0, "client `port`; 0 picks a free one")
	fs.StringVar(&o.jsDir, "js-dir", "", "JetStream store `dir`ectory")
	fs.BoolVar(&o.syncAlways, "sync-always", false, "fsync every JetStream write (sync_interval: always)")
	fs.StringVar(&o.name, "name", "persist-bench", "server `name`, unique in a cluster")
	fs.IntVar(&o.clusterPort, "cluster-port", 0, "route `port` of a cluster node; 0: not clustered")
	fs.StringVar(&o.routes, "routes", "", "comma-separated route `urls` of every node of the cluster")
	fs.IntVar(&o.partitions, "partition-count", 0, "map the requests of --prefix to this `number` of partitions; 0: no mappings")
	fs.StringVar(&o.prefix, "prefix", subjects.DefaultPrefix, "subject `prefix` of the mappings")
	if err := command.Parse(fs, "PERSIST_BENCH_SERVE_NATS_", args, func(string) (string, bool) { return "", false }); err != nil {
		return o, err
	}
	switch {
	case o.jsDir == "" || o.port < 0 || o.port > 65535:
		return o, command.Usagef("%s needs --js-dir and a port 0-65535", serveNATSMode)
	case o.clusterPort < 0 || o.clusterPort > 65535:
		return o, command.Usagef("%s: invalid --cluster-port %d", serveNATSMode, o.clusterPort)
	case (o.clusterPort == 0) != (o.routes == ""):
		return o, command.Usagef("%s: --cluster-port and --routes go together", serveNATSMode)
	}
	return o, nil
}

// serverOptions are the nats-server options of o.
func (o serveOptions) serverOptions() (*server.Options, error) {
	opts := &server.Options{
		ServerName: o.name,
		Host:       "127.0.0.1",
		Port:       o.port,
		NoSigs:     true,
		NoLog:      true,
		JetStream:  true,
		StoreDir:   o.jsDir,
	}
	if o.port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if o.syncAlways {
		// What "jetstream { sync_interval: always }" sets.
		opts.SyncAlways = true
		opts.SyncInterval = 2 * time.Minute
	}
	if o.clusterPort != 0 {
		opts.Cluster.Name = clusterName
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", o.clusterPort
		opts.Routes = server.RoutesFromStr(o.routes)
		if len(opts.Routes) == 0 {
			return nil, fmt.Errorf("no route in %q", o.routes)
		}
	}
	if o.partitions > 0 {
		m, err := subjects.PartitionMappings(o.prefix, o.partitions)
		if err != nil {
			return nil, err
		}
		// What a "mappings {…}" block at the top of a configuration
		// file makes: the global account with the mappings.
		gacc := server.NewAccount(server.DEFAULT_GLOBAL_ACCOUNT)
		for src, dest := range m {
			if err := gacc.AddMapping(src, dest); err != nil {
				return nil, fmt.Errorf("mapping %s: %w", src, err)
			}
		}
		opts.Accounts = []*server.Account{gacc}
	}
	return opts, nil
}

// serveNATS runs a nats-server with JetStream, its store in --js-dir,
// until ctx is cancelled (SIGTERM), then shuts it down cleanly. A cluster
// node says it is ready once it has a route to every other node.
func serveNATS(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseServeOptions(args)
	if err != nil {
		return err
	}
	opts, err := o.serverOptions()
	if err != nil {
		return command.Usagef("%s: %v", serveNATSMode, err)
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
	// The route to itself is ignored; every other one must be up.
	for deadline := time.Now().Add(serverStartTimeout); s.NumRemotes() < len(opts.Routes)-1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Shutdown()
			return fmt.Errorf("nats-server %s: %d of %d routes after %v", o.name, s.NumRemotes(), len(opts.Routes)-1, serverStartTimeout)
		}
	}
	fmt.Fprintf(stdout, "%s%s\n", readyPrefix, s.ClientURL())
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
