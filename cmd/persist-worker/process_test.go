package main

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/nats-persist/persist/cmd/internal/command"
)

// childEnv makes the test binary run the worker's main instead of the
// tests, so that a test can run the worker as a real child process.
const childEnv = "PERSIST_WORKER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		command.Main("persist-worker", run)
	}
	os.Exit(m.Run())
}

// child is the worker running as a child process, logging JSON.
type child struct {
	cmd  *exec.Cmd
	logs *logSink
	done chan struct{}
	err  error // Wait's result, valid after done
}

// startChild runs the worker binary with args (plus JSON logs at debug
// level); it is killed at the end of the test if still running.
func startChild(tb testing.TB, args ...string) *child {
	tb.Helper()
	return startWrapped(tb, nil, args...)
}

// startWrapped is startChild with the worker run by the command wrap (nil:
// none), which ends by executing its arguments.
func startWrapped(tb testing.TB, wrap []string, args ...string) *child {
	tb.Helper()
	argv := append(append(wrap[:len(wrap):len(wrap)], os.Args[0], "--log-format", "json", "--log-level", "debug"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	c := &child{cmd: cmd, logs: newLogSink(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			c.logs.Write(append(sc.Bytes(), '\n'))
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
	})
	return c
}

// exit waits at most within for the child to exit and returns its exit
// status.
func (c *child) exit(tb testing.TB, within time.Duration) int {
	tb.Helper()
	select {
	case <-c.done:
	case <-time.After(within):
		tb.Fatalf("worker still running after %v; log:\n%s", within, c.logs)
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ExitCode()
	}
	if c.err != nil {
		tb.Fatal(c.err)
	}
	return 0
}

// terminate sends SIGTERM and returns the exit status, failing the test if
// the worker takes longer than within.
func (c *child) terminate(tb testing.TB, within time.Duration) int {
	tb.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	return c.exit(tb, within)
}

// freePort returns a local TCP port nobody listens on right now.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
