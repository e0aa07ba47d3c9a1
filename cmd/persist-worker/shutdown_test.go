package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Bounds of the shutdown tests: the worker is given a long
// --shutdown-timeout, and must exit well before it when NATS is gone.
const (
	longShutdownTimeout = "60s"
	unreachableExit     = 20 * time.Second
)

// stoppedUnreachable is the worker's log line when it stopped without NATS.
const stoppedUnreachable = "stopped with NATS unreachable: requests not yet started were not applied and replies not yet sent are lost; every acknowledged write is on disk"

func TestProcess_SIGTERMNATSNeverReached(t *testing.T) {
	t.Parallel()
	url := fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))
	w := startChild(t, "--data", t.TempDir(), "--nats-url", url, "--shutdown-timeout", longShutdownTimeout)
	w.logs.wait(t, "persist worker started")
	if code := w.terminate(t, unreachableExit); code != 0 {
		t.Fatalf("exit status = %d, want 0; log:\n%s", code, w.logs)
	}
	checkStoppedUnreachable(t, w)
}

func TestProcess_SIGTERMNATSGone(t *testing.T) {
	t.Parallel()
	// Random ports, not freePort's: a port free a moment ago may be taken
	// by a parallel test by the time the server listens.
	data := t.TempDir()
	srv := runServer(t, &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	w := startChild(t, "--data", data, "--nats-url", srv.ClientURL(), "--shutdown-timeout", longShutdownTimeout)
	w.logs.wait(t, "persist worker started")

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for i := range 20 {
		stream := fmt.Sprintf("acme.s%d", i%4)
		payload := fmt.Sprintf("p%d", i)
		want[payload] = setMsg(t, nc, "persist.api.set."+stream, payload)
	}
	nc.Close()

	srv.Shutdown()
	srv.WaitForShutdown()
	w.logs.wait(t, "NATS disconnected")
	if code := w.terminate(t, unreachableExit); code != 0 {
		t.Fatalf("exit status = %d, want 0; log:\n%s", code, w.logs)
	}
	checkStoppedUnreachable(t, w)

	// Every acknowledged write is there after a restart, byte for byte.
	srv = runServer(t, &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	w = startChild(t, "--data", data, "--nats-url", srv.ClientURL())
	w.logs.wait(t, "persist worker started")
	nc, err = nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i := range 20 {
		stream := fmt.Sprintf("acme.s%d", i%4)
		payload := fmt.Sprintf("p%d", i)
		msg, err := nc.Request("persist.api.get."+stream, fmt.Appendf(nil, `{"seq":%d}`, want[payload]), 5*time.Second)
		if err != nil {
			t.Fatalf("get %s seq %d: %v", stream, want[payload], err)
		}
		if string(msg.Data) != payload {
			t.Errorf("get %s seq %d = %q (headers %v), want %q", stream, want[payload], msg.Data, msg.Header, payload)
		}
	}
	if code := w.terminate(t, unreachableExit); code != 0 {
		t.Fatalf("exit status after restart = %d, want 0; log:\n%s", code, w.logs)
	}
}

// checkStoppedUnreachable checks that the worker said why it stopped
// without answering, and that it logged no error.
func checkStoppedUnreachable(t *testing.T, w *child) {
	t.Helper()
	logs := w.logs.String()
	if !strings.Contains(logs, stoppedUnreachable) {
		t.Errorf("log lacks %q:\n%s", stoppedUnreachable, logs)
	}
	if strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("log has errors:\n%s", logs)
	}
}
