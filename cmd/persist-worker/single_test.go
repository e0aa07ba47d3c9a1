package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// serviceID returns the id of the micro service name at url.
func serviceID(t *testing.T, nc *nats.Conn, name string) string {
	t.Helper()
	m, err := nc.Request("$SRV.INFO."+name, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("$SRV.INFO.%s: %v", name, err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil || info.ID == "" {
		t.Fatalf("$SRV.INFO.%s = %q: %v", name, m.Data, err)
	}
	return info.ID
}

func TestProcess_SamePrefix(t *testing.T) {
	t.Parallel()
	// Port 0: the embedded server picks a free port itself, which no
	// parallel test can take first.
	first := startChild(t, "--data", t.TempDir(), "--listen", "127.0.0.1:0")
	url, _ := first.logs.wait(t, "embedded NATS server listening")["url"].(string)
	if url == "" {
		t.Fatalf("no url in the listening line; log:\n%s", first.logs)
	}
	first.logs.wait(t, "persist worker started")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	id := serviceID(t, nc, "persist")

	// Another name and another data directory do not escape the check.
	second := startChild(t, "--data", t.TempDir(), "--nats-url", url, "--name", "other")
	if code := second.exit(t, startFailure); code != 1 {
		t.Fatalf("second worker exit status = %d, want 1; log:\n%s", code, second.logs)
	}
	logs := second.logs.String()
	for _, want := range []string{"another worker serves this prefix persist.api.>", `service "persist"`, "id " + id, "started "} {
		if !strings.Contains(logs, want) {
			t.Errorf("second worker's output lacks %q:\n%s", want, logs)
		}
	}

	// Another prefix runs beside the first.
	third := startChild(t, "--data", t.TempDir(), "--nats-url", url, "--prefix", "other")
	third.logs.wait(t, "persist worker started")
	for _, subj := range []string{"persist.api.inventory.x", "other.api.inventory.x"} {
		if _, err := nc.Request(subj, nil, 5*time.Second); err != nil {
			t.Errorf("request %s: %v", subj, err)
		}
	}
	if code := third.terminate(t, startFailure); code != 0 {
		t.Errorf("third worker exit status = %d, want 0; log:\n%s", code, third.logs)
	}
	if code := first.terminate(t, startFailure); code != 0 {
		t.Errorf("first worker exit status = %d, want 0; log:\n%s", code, first.logs)
	}
}

// TestProcess_SamePrefixJoinedLate runs two workers on one prefix whose
// NATS servers are joined after both started: the one started later exits
// 1 naming the other, which keeps serving.
func TestProcess_SamePrefixJoinedLate(t *testing.T) {
	t.Parallel()
	a := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		ServerName: "a", Cluster: server.ClusterOpts{Name: "c", Host: "127.0.0.1", Port: -1}})
	clusterPort := a.ClusterAddr().Port
	bOpts := &server.Options{Host: "127.0.0.1", Port: freePort(t), NoSigs: true, NoLog: true, ServerName: "b"}
	b := runServer(t, bOpts)

	older := startChild(t, "--data", t.TempDir(), "--nats-url", a.ClientURL(), "--instance-check-interval", "100ms")
	older.logs.wait(t, "persist worker started")
	younger := startChild(t, "--data", t.TempDir(), "--nats-url", b.ClientURL(), "--instance-check-interval", "100ms")
	younger.logs.wait(t, "persist worker started")
	nc, err := nats.Connect(a.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	id := serviceID(t, nc, "persist")

	b.Shutdown()
	b.WaitForShutdown()
	routed := *bOpts
	routed.Cluster = server.ClusterOpts{Name: "c", Host: "127.0.0.1", Port: -1}
	routed.Routes = server.RoutesFromStr(fmt.Sprintf("nats-route://127.0.0.1:%d", clusterPort))
	runServer(t, &routed)

	if code := younger.exit(t, startFailure); code != 1 {
		t.Fatalf("younger worker exit status = %d, want 1; log:\n%s", code, younger.logs)
	}
	if logs := younger.logs.String(); !strings.Contains(logs, "another worker serves this prefix") || !strings.Contains(logs, "id "+id) {
		t.Errorf("younger worker's output does not name the older one (%s):\n%s", id, logs)
	}
	select {
	case <-older.done:
		t.Fatalf("the older worker exited too: %v; log:\n%s", older.err, older.logs)
	default:
	}
	if _, err := nc.Request("persist.api.inventory.x", nil, 5*time.Second); err != nil {
		t.Fatalf("request to the older worker: %v", err)
	}
	if got := serviceID(t, nc, "persist"); got != id {
		t.Errorf("service now %s, want the older %s", got, id)
	}
	if code := older.terminate(t, startFailure); code != 0 {
		t.Errorf("older worker exit status = %d, want 0; log:\n%s", code, older.logs)
	}
}

// TestProcess_SamePrefixPermissions runs the check with the worker's user
// of testdata/nats-server.conf, which may not subscribe to inboxes: the
// second worker still finds the first and its start time.
func TestProcess_SamePrefixPermissions(t *testing.T) {
	t.Parallel()
	opts, err := server.ProcessConfigFile(filepath.Join("..", "..", "testdata", "nats-server.conf"))
	if err != nil {
		t.Fatalf("ProcessConfigFile: %v", err)
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	srv := runServer(t, opts)
	url := "nats://worker:worker-secret@" + srv.Addr().String()

	first := startChild(t, "--data", t.TempDir(), "--nats-url", url)
	first.logs.wait(t, "persist worker started")
	second := startChild(t, "--data", t.TempDir(), "--nats-url", url)
	if code := second.exit(t, startFailure); code != 1 {
		t.Fatalf("second worker exit status = %d, want 1; log:\n%s", code, second.logs)
	}
	logs := second.logs.String()
	for _, want := range []string{"another worker serves this prefix persist.api.>", `service "persist"`, "version ", "started "} {
		if !strings.Contains(logs, want) {
			t.Errorf("second worker's output lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "Permissions Violation") {
		t.Errorf("the check used subjects the worker's user may not use:\n%s", logs)
	}
	if code := first.terminate(t, startFailure); code != 0 {
		t.Errorf("first worker exit status = %d, want 0; log:\n%s", code, first.logs)
	}
}

func TestParseConfig_InstanceCheckInterval(t *testing.T) {
	cfg, err := parseConfig(nil, env{}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.InstanceCheckInterval, 10*time.Second; got != want {
		t.Errorf("default --instance-check-interval = %v, want %v", got, want)
	}
	cfg, err = parseConfig(nil, env{"PERSIST_INSTANCE_CHECK_INTERVAL": "3s"}.lookup)
	if err != nil || cfg.InstanceCheckInterval != 3*time.Second {
		t.Errorf("PERSIST_INSTANCE_CHECK_INTERVAL=3s: %v, %v", cfg.InstanceCheckInterval, err)
	}
	for _, bad := range []string{"0s", "-1s"} {
		_, err := parseConfig([]string{"--instance-check-interval", bad}, env{}.lookup)
		if err == nil || !strings.Contains(err.Error(), "--instance-check-interval") {
			t.Errorf("--instance-check-interval %s: error %v, want a usage error naming the flag", bad, err)
		}
	}
}
