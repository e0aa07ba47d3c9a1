package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startAt starts a broker with opts on its own connection to url, shut
// down at the end of the test.
func startAt(t *testing.T, url string, opts Options) (*Broker, error) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	b, err := New(nc, opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.Shutdown(ctx)
	})
	return b, nil
}

func TestNew_PrefixInUse(t *testing.T) {
	s := runServer(t)
	first, err := startAt(t, s.ClientURL(), Options{})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	info := first.Service().Info()
	// Another name does not escape the check: the endpoints' subjects do.
	_, err = startAt(t, s.ClientURL(), Options{Name: "other-name"})
	if !errors.Is(err, ErrPrefixInUse) {
		t.Fatalf("second New() on the same prefix = %v, want ErrPrefixInUse", err)
	}
	for _, want := range []string{`service "persist"`, "id " + info.ID, "version " + Version, "started ", "persist.api."} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Another prefix runs beside it, and both serve.
	other, err := startAt(t, s.ClientURL(), Options{Prefix: "other"})
	if err != nil {
		t.Fatalf("New() with another prefix = %v", err)
	}
	nc := connect(t, s)
	for _, subj := range []string{"persist.api.inventory.x", "other.api.inventory.x"} {
		if _, err := nc.Request(subj, nil, 5*time.Second); err != nil {
			t.Errorf("request %s: %v", subj, err)
		}
	}
	select {
	case err := <-first.Conflict():
		t.Errorf("first broker: conflict %v", err)
	case err := <-other.Conflict():
		t.Errorf("broker on another prefix: conflict %v", err)
	default:
	}
}

// TestBroker_YoungerStops starts two brokers on one prefix that cannot see
// each other at start (each on its own NATS server), then joins the
// servers: the younger one stops serving, the older keeps serving.
func TestBroker_YoungerStops(t *testing.T) {
	const interval = 50 * time.Millisecond
	clusterPort := freeTCPPort(t)
	a := runServerOpts(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		ServerName: "a", Cluster: server.ClusterOpts{Name: "c", Host: "127.0.0.1", Port: clusterPort}})
	bPort := freeTCPPort(t)
	bOpts := &server.Options{Host: "127.0.0.1", Port: bPort, NoSigs: true, NoLog: true, ServerName: "b"}
	b := runServerOpts(t, bOpts)

	older, err := startAt(t, a.ClientURL(), Options{InstanceCheckInterval: interval})
	if err != nil {
		t.Fatalf("New() on server a = %v", err)
	}
	younger, err := startAt(t, b.ClientURL(), Options{InstanceCheckInterval: interval})
	if err != nil {
		t.Fatalf("New() on server b, not yet joined = %v", err)
	}

	// Server b comes back on the same port, routed to a: the brokers'
	// connections now reach each other.
	b.Shutdown()
	b.WaitForShutdown()
	routed := *bOpts
	routed.Cluster = server.ClusterOpts{Name: "c", Host: "127.0.0.1", Port: -1}
	routed.Routes = server.RoutesFromStr(fmt.Sprintf("nats-route://127.0.0.1:%d", clusterPort))
	runServerOpts(t, &routed)

	select {
	case err := <-younger.Conflict():
		if !errors.Is(err, ErrPrefixInUse) || !strings.Contains(err.Error(), older.Service().Info().ID) {
			t.Errorf("conflict = %v, want ErrPrefixInUse naming %s", err, older.Service().Info().ID)
		}
	case err := <-older.Conflict():
		t.Fatalf("the older broker stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no broker stopped within 20s of the servers joining")
	}
	if !younger.Service().Stopped() {
		t.Error("the younger broker's service still runs")
	}
	// The older one keeps serving, through several checks that see
	// nothing any more.
	nc := connect(t, a)
	for range 5 {
		if _, err := nc.Request("persist.api.inventory.x", nil, 5*time.Second); err != nil {
			t.Fatalf("request to the older broker: %v", err)
		}
		select {
		case err := <-older.Conflict():
			t.Fatalf("the older broker stopped too: %v", err)
		case <-time.After(interval):
		}
	}
	if older.Service().Stopped() {
		t.Error("the older broker's service stopped")
	}
}

func TestInstance_OlderThan(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	in := instance{id: "B", started: t0}
	tests := []struct {
		started time.Time
		id      string
		want    bool
	}{
		{t0.Add(time.Nanosecond), "A", true},
		{t0.Add(-time.Nanosecond), "C", false},
		{t0, "C", true}, // a tie: the smaller id is older
		{t0, "A", false},
	}
	for _, tt := range tests {
		if got := in.olderThan(tt.started, tt.id); got != tt.want {
			t.Errorf("(%v, B).olderThan(%v, %s) = %v, want %v", t0, tt.started, tt.id, got, tt.want)
		}
	}
}

// runServerOpts starts an embedded NATS server with opts for the test.
func runServerOpts(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("NewServer() = %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// freeTCPPort returns a local port nobody listens on right now.
func freeTCPPort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestBroker_SimultaneousStart starts two brokers on one prefix at the
// same moment, several times: whether the start check or the periodic one
// decides, exactly one keeps serving.
func TestBroker_SimultaneousStart(t *testing.T) {
	const interval = 50 * time.Millisecond
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			s := runServer(t)
			type result struct {
				b   *Broker
				err error
			}
			results := make(chan result, 2)
			for range 2 {
				go func() {
					b, err := startAt(t, s.ClientURL(), Options{InstanceCheckInterval: interval})
					results <- result{b, err}
				}()
			}
			var serving []*Broker
			refused := 0
			for range 2 {
				r := <-results
				switch {
				case errors.Is(r.err, ErrPrefixInUse):
					refused++
				case r.err != nil:
					t.Fatalf("New() = %v", r.err)
				default:
					serving = append(serving, r.b)
				}
			}
			if refused == 0 {
				// Both started: the periodic check stops one.
				select {
				case err := <-serving[0].Conflict():
					if !errors.Is(err, ErrPrefixInUse) {
						t.Fatalf("conflict = %v", err)
					}
					serving = serving[1:]
				case err := <-serving[1].Conflict():
					if !errors.Is(err, ErrPrefixInUse) {
						t.Fatalf("conflict = %v", err)
					}
					serving = serving[:1]
				case <-time.After(20 * time.Second):
					t.Fatal("both brokers still serving after 20s")
				}
			}
			if len(serving) != 1 {
				t.Fatalf("%d brokers serving, %d refused, want exactly one serving", len(serving), refused)
			}
			nc := connect(t, s)
			for range 5 {
				if _, err := nc.Request("persist.api.inventory.x", nil, 5*time.Second); err != nil {
					t.Fatalf("request to the broker left: %v", err)
				}
				select {
				case err := <-serving[0].Conflict():
					t.Fatalf("the broker left stopped too: %v", err)
				case <-time.After(interval):
				}
			}
		})
	}
}

func TestInstance_StringPrintable(t *testing.T) {
	in := instance{name: "a\nb", id: "x y", version: strings.Repeat("v", 100) + "\x1b", subject: "persist.api.\x00"}
	got := in.String()
	if strings.ContainsFunc(got, func(r rune) bool { return r < ' ' }) || len(got) > 300 {
		t.Errorf("String() = %q, want it bounded and printable", got)
	}
	if !strings.Contains(got, `service "a?b" id x?y`) {
		t.Errorf("String() = %q, want the odd characters replaced", got)
	}
}
