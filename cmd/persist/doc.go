// Command persist reads and writes persist streams from the shell: one
// verb per operation of the protocol (set, get, getall, delete, keys,
// ls, info, config, destroy, changes, and locate, which says which worker
// serves a stream), workers, which lists the running workers and the
// partitions each serves, watch for events, and export and
// import for moving a stream's messages through a JSON-lines file.
//
// It connects as the nats command does: --server or NATS_URL, the
// credential flags and variables, and the nats CLI's context files
// (--context NAME, NATS_CONTEXT, else the context selected in
// $XDG_CONFIG_HOME/nats/context.txt or ~/.config/nats/context.txt); a
// flag or variable wins over the context's field. Output is readable by
// default and one JSON object a line with --json. Exit status: 0, 1 for a
// failed request, 2 for a command line that cannot work.
//
// The parts: main.go parses the command line (kingpin) and runs the verb;
// conn.go makes the connection; output.go prints messages, events and
// errors; write.go, read.go, follow.go and transfer.go hold the verbs;
// progress.go draws the progress bar of export and import. All protocol
// work is the client package's.
package main
