// Command persist-bench measures Persist side by side with JetStream on one
// machine: one command starts, in one process tree, a nats-server with
// JetStream, a persist worker connected to it, an echo responder and the
// JetStream peers, runs every scenario with Persist and its peer
// alternating, and prints a markdown table of medians, min–max, ratios and
// the targets of issue 6 (or, with --json, the same as JSON).
//
// Usage:
//
//	persist-bench [--reps 2] [--many-reps 1] [--duration 5s] [--clients 64]
//	    [--payload 100] [--many-streams 10000] [--huge-streams 100000]
//	    [--scenarios echo,set,...] [--data ./persist-bench-data]
//	    [--cluster-workers 1,2,3] [--cluster-streams 256]
//	    [--worker PATH] [--worker-arg FLAG]... [--json] [--keep]
//
// Run it from a checkout of the module: without --worker it builds
// github.com/nats-persist/persist/cmd/persist-worker into --data with
// `go build`. With --worker it measures that binary instead (an older
// build, to compare before and after).
//
// # Processes
//
// The nats-server is this binary again, started with the hidden first
// argument serve-nats (--port, --js-dir, --sync-always): it embeds
// nats-server with JetStream, its store under --data, and prints
// "ready <url>" once it accepts clients. So its memory (VmRSS of
// /proc/<pid>/status) and its restart time are those of a process of its
// own, as the worker's are. For the cluster rows the same mode also takes
// --name, --cluster-port, --routes and --partition-count: a node of a
// cluster with routes to the others (it says ready once they are up) and
// the mappings of subjects.PartitionMappings in the global account. The
// worker runs as `persist-worker --nats-url
// <that server> --data <dir> --prefix <prefix> --log-format json` plus
// every --worker-arg, so it starts no server of its own. The clients, the
// echo responder and the JetStream publishers and consumers run in the
// bench process: --clients request loops, every 16 sharing one NATS
// connection. On Linux children run in their own process group (a Ctrl-C
// reaches the bench, which stops them in order) and get SIGKILL from the
// kernel when the bench dies (Pdeathsig); on every system, every exit path
// of the bench stops them (SIGTERM, then SIGKILL after stopTimeout). Their logs are in
// <data>/logs.
//
// The data directory (default ./persist-bench-data; put it on the disk you
// mean to measure, not a tmpfs) holds main/ (the server and worker of the
// throughput rows), sync/ (the second server, sync always), many-<rep>/
// and huge/ (fresh processes for those rows), cluster/ (the nodes' stores
// and the workers' data), logs/ and the built worker.
// Unless --keep, what a run wrote is removed at its end.
//
// # Scenarios
//
// Each throughput row is measured --reps times, Persist then its peer,
// each for --duration, so that drift and noise hit both; the table shows
// the median and the range. Payloads are --payload bytes.
//
//   - echo: bare NATS request/reply to the bench's own responder through
//     the same server: the ceiling of any service.
//   - set: set on one stream, against JetStream publish waiting for the ack
//     on one stream. Also shown divided by echo.
//   - set-sync: set on a stream configured {"sync":true}, against JetStream
//     publish on a second server with sync_interval always. Also shown
//     divided by the set row's JetStream figure.
//   - setmany: setmany of 100 messages per request (msgs/s), against
//     JetStream PublishAsync with PublishAsyncMaxPending(256), one
//     publisher per connection, timed until the last ack.
//   - get: get of a random seq of a stream of --get-msgs messages, against
//     a direct get ($JS.API.DIRECT.GET, AllowDirect) of a random seq.
//   - getall: one client replays --getall-msgs messages in pages of 1000,
//     following Persist-Next-Seq until Persist-Num-Pending is 0, against an
//     ordered consumer reading as many.
//
// The many-streams rows run --many-reps times, each on a fresh server and
// worker:
//
//   - create: one set each on --many-streams new streams, against creating
//     as many JetStream streams (one subject each) with one publish each;
//     rate and error count.
//   - rss: after create and --idle (10 s), VmRSS of the worker against
//     VmRSS of the JetStream server (the largest value sampled meanwhile
//     is in the detail table).
//   - restart: SIGTERM the worker, wait, start it, time until a get of one
//     of the streams answers; against the same for the JetStream server
//     and a direct get. The time to stop is in the notes.
//   - set-random: just after that restart, set on a random one of the
//     streams, against JetStream publish to a random one of its streams;
//     also shown divided by the set row, and as p99.
//
// The huge row is Persist alone, with --huge-streams streams (0 skips it)
// under one namespace: they are made by writing one stream over the wire
// and copying its file (creating them over the wire would take minutes;
// the create row measures that), then the worker is started and measured:
// time until a get answers, RSS after --idle, random set and random get
// over all of them with the largest RSS sampled meanwhile, and the time of
// a list page of 1000 names (the first page and one from the middle).
//
// The cluster rows run on three nats-server nodes (free route and client
// ports, JetStream for the lease bucket, the mappings of 8 partitions),
// with each count of --cluster-workers workers (`--partitions auto
// --partition-count 8 --lease-replicas 3`, worker k on node k mod 3, a
// data directory each). Workers are added one at a time up to the largest
// count, then in the next repetition stopped (SIGTERM) one at a time down
// to the smallest; after each change the bench waits until the workers'
// stats ($SRV.STATS.persist) show every partition served once, no worker
// beyond its share ceil(8/n), and an inventory request for a stream of each partition is
// answered from every node; then one set on every stream creates or opens
// its file on the worker that now serves it, before the measurement. The
// clients are spread over the three nodes.
//
//   - cluster-set: set on a random one of --cluster-streams streams
//     c<i>.s, a namespace each, so that they spread over the partitions;
//     with the fewest workers against a bare echo through the cluster
//     (a responder on each node, so an echo never crosses a route: a
//     ceiling), and each larger count divided by the fewest.
//   - cluster-setmany: setmany of 100 messages per request to a random
//     one of those streams (msgs/s), and the same ratios.
//
// For each of their rows the notes give where the CPU went (cores busy
// on the machine, by the nats-servers, the workers, the bench and the
// rest, from /proc) and whether the cores were the limit at the largest
// count.
//
// --scenarios picks rows by the names above. A row that needs another's
// setup runs it (restart and set-random need create; set measures echo
// too, for its ratio) but only the rows asked for are printed.
//
// # Output
//
// Above the table: the date, the exact command line, the CPU model, cores,
// memory and kernel, the Go version, the worker's version and commit (as
// stamped in the binary: `go build` stamps it, a build with
// -buildvcs=false does not), the filesystem of --data and the load
// average at the start and end. The table has one line per row: Persist's
// median with min–max (and p99 for request rows), the peer's, the ratio
// of the medians (Persist over peer; for memory and time lower is
// better), the target of issue 6 and whether it is met, and the error
// counts; a detail table lists every sample, p50, p99, errors and RSS of
// each side; the first error of each side and notes follow. --json prints
// the same as one JSON object: machine, settings, rows, notes.
//
// While a measurement runs, a progress line is drawn on stderr when it is
// a terminal; every measurement also ends with one log line on stderr.
//
// # External mode
//
// With --nats-url the command instead measures an already running worker
// at that server, as earlier versions did: the ops of --ops (echo, set,
// get) in order, each for --duration, with --clients loops on --streams
// streams named <stream-prefix>.s<N> (--sync configures them with sync
// on; get fills an empty stream with 100 messages first). It prints a
// table of op, clients, ops, ops/s, p50, p99 and errors, and a line
// naming the machine; unless --keep the streams are destroyed at the end.
//
// Every flag can also be set by an environment variable, PERSIST_BENCH_
// and the flag's name in upper snake case (PERSIST_BENCH_CLIENTS=128); a
// flag on the command line wins (for --worker-arg the variable gives one
// argument). Values are bounded (see --help). A bad flag exits with status
// 2, any other failure with 1; an interrupted run still prints the rows
// measured so far and exits 1.
package main
