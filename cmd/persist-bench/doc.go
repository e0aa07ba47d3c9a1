// Command persist-bench measures request/reply throughput and latency of a
// running persist worker over NATS, next to a bare NATS echo responder
// measured in the same run with the same clients, so that the cost of the
// worker can be told apart from the cost of NATS and of the machine.
//
// Usage:
//
//	persist-bench [--nats-url nats://127.0.0.1:4222] [--prefix persist]
//	    [--clients 64] [--duration 10s] [--streams 8] [--payload 128]
//	    [--sync] [--ops echo,set,get] [--stream-prefix bench] [--keep]
//	    [--timeout 5s]
//
// It measures each op of --ops in order, each for --duration:
//
//   - echo: requests to a responder that the tool runs itself on its own
//     connection, in a queue group, on the subject
//     <stream-prefix>.echo.<unique id>; it answers with the request body.
//   - set: client i appends --payload bytes to stream
//     <stream-prefix>.s<i mod --streams>. Before the first set or get every
//     stream gets a config request setting sync as --sync says.
//   - get: client i reads random existing seqs of its stream; a stream that
//     is empty (no set phase ran) first gets 100 messages.
//
// --clients request loops run at once, each waiting for its reply before
// it sends the next request; every 16 of them share one NATS connection.
// Every error reply (a Nats-Service-Error-Code header), missing responder
// and timeout (--timeout) counts as an error.
//
// While a phase runs, and only when stderr is a terminal, one progress line
// on stderr shows the op, the elapsed time, the requests so far and the
// current rate. At the end stdout gets a table with op, clients, ops, ops/s,
// p50 and p99 latency and errors, and a line naming the machine. Unless
// --keep is given the benchmark streams are then destroyed.
//
// Every flag can also be set by an environment variable, PERSIST_BENCH_
// and the flag's name in upper snake case (PERSIST_BENCH_CLIENTS=128); a
// flag on the command line wins. A bad flag exits with status 2, any other
// failure with 1.
package main
