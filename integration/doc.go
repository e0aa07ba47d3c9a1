// Package integration holds the end-to-end tests of the persist worker:
// real NATS servers embedded in the test process, the worker both
// in-process and as a child process of the test, and clients that speak
// only the wire protocol. It has no code of its own besides this comment;
// run it with `go test ./integration/`.
package integration
