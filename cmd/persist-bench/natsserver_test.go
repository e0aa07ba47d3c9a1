package main

import (
	"testing"

	"github.com/nats-persist/persist/cmd/internal/command"
)

func TestParseServeOptions(t *testing.T) {
	o, err := parseServeOptions([]string{"--js-dir", "/d", "--name", "node-b", "--cluster-port", "7000",
		"--routes", "nats-route://127.0.0.1:7000,nats-route://127.0.0.1:7001", "--partition-count", "8", "--prefix", "app.p"})
	if err != nil {
		t.Fatalf("parseServeOptions() = %v", err)
	}
	opts, err := o.serverOptions()
	if err != nil {
		t.Fatalf("serverOptions() = %v", err)
	}
	if opts.ServerName != "node-b" || opts.Cluster.Port != 7000 || opts.Cluster.Name != clusterName || len(opts.Routes) != 2 || !opts.JetStream {
		t.Errorf("options = name %q, cluster %+v, %d routes, JetStream %v", opts.ServerName, opts.Cluster, len(opts.Routes), opts.JetStream)
	}
	if len(opts.Accounts) != 1 || opts.Accounts[0].Name != "$G" {
		t.Fatalf("accounts = %v, want the global account with the mappings", opts.Accounts)
	}
	// Not clustered, no mappings: the server of the other rows.
	if o, err = parseServeOptions([]string{"--js-dir", "/d"}); err != nil {
		t.Fatal(err)
	}
	if opts, err = o.serverOptions(); err != nil || opts.Cluster.Port != 0 || len(opts.Routes) != 0 || len(opts.Accounts) != 0 {
		t.Errorf("plain server options = %+v, %v, want no cluster, routes or accounts", opts, err)
	}
	for _, args := range [][]string{
		{},
		{"--js-dir", "/d", "--port", "70000"},
		{"--js-dir", "/d", "--cluster-port", "7000"},
		{"--js-dir", "/d", "--routes", "nats-route://127.0.0.1:7000"},
		{"--js-dir", "/d", "--cluster-port", "-2", "--routes", "x"},
	} {
		if _, err := parseServeOptions(args); command.ExitCode(err) != 2 {
			t.Errorf("parseServeOptions(%q) = %v, want a usage error", args, err)
		}
	}
	o, _ = parseServeOptions([]string{"--js-dir", "/d", "--partition-count", "2000"})
	if _, err := o.serverOptions(); err == nil {
		t.Errorf("serverOptions() of 2000 partitions = nil, want an error")
	}
}
