package client_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/broker"
)

// TestMain gives the examples what they need to run as printed: a NATS
// server with a persist worker, named by NATS_URL as a user's shell
// would. Tests start their own.
func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "client-examples")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true})
		if err != nil {
			return fail(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			return fail(fmt.Errorf("nats server did not start"))
		}
		defer s.Shutdown()
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			return fail(err)
		}
		defer nc.Close()
		b, err := broker.New(nc, broker.Options{DataDir: dir})
		if err != nil {
			return fail(err)
		}
		if err := nc.Flush(); err != nil {
			return fail(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b.Shutdown(ctx)
		}()
		os.Setenv("NATS_URL", s.ClientURL())
		return m.Run()
	}())
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, err)
	return 1
}
