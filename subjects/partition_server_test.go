package subjects_test

// The partition function against the NATS server's own subject mapping:
// real servers, embedded in the test process, configured with the text of
// PartitionMappings, route every request where Partition says.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// mappingsBlock spells PartitionMappings as the mappings block of an
// account in a nats-server configuration, one line per mapping in the
// order of their sources.
func mappingsBlock(tb testing.TB, prefix string, partitions int, indent string) string {
	tb.Helper()
	block, err := subjects.PartitionMappingsBlock(prefix, partitions)
	if err != nil {
		tb.Fatal(err)
	}
	lines := strings.SplitAfter(block, "\n")
	return indent + strings.Join(lines[:len(lines)-1], indent)
}

// loadConfig writes text to a configuration file and loads it the way
// nats-server -c does.
func loadConfig(tb testing.TB, text string) *server.Options {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "server.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		tb.Fatalf("loading %s:\n%s\n%v", path, text, err)
	}
	return opts
}

// startServer starts an embedded server with opts on a free client port.
func startServer(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server did not start")
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// startCluster starts three servers, each with opts from load, routed to
// one another on free ports, and waits until each has a route to both
// others. The route ports are chosen before the servers start, since a
// JetStream cluster refuses to start a server without its routes.
func startCluster(tb testing.TB, load func(i int) *server.Options) []*server.Server {
	tb.Helper()
	var ports []int
	var routes []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ports = append(ports, port)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", port))
	}
	var servers []*server.Server
	for i := range 3 {
		opts := load(i)
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", ports[i]
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		servers = append(servers, startServer(tb, opts))
	}
	eventually(tb, "the routes between the three servers", func() bool {
		for _, s := range servers {
			if s.NumRemotes() != 2 {
				return false
			}
		}
		return true
	})
	return servers
}

// eventually polls cond until it holds, failing the test after a generous
// timeout.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

func connect(tb testing.TB, s *server.Server, user, password string) *nats.Conn {
	tb.Helper()
	// A permission violation is reported asynchronously: log it, so a
	// request that times out says why.
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, password),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { tb.Logf("%s: %v", user, err) }))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// testConfig is a server with the mappings in account PERSIST and one
// user in it; cluster, when not empty, is added as it is.
func testConfig(tb testing.TB, prefix string, partitions int, cluster string) *server.Options {
	return loadConfig(tb, cluster+`
accounts {
  PERSIST {
    users: [{user: u, password: p}]
`+mappingsBlock(tb, prefix, partitions, "    ")+`  }
}
`)
}

// wantSubject is where the server must deliver a message published on
// subject: the partition subject of Partition for a request that names a
// stream, the subject itself for anything else.
func wantSubject(prefix string, partitions int, subject string) string {
	if op, stream, err := subjects.ParseAPI(prefix, subject); err == nil {
		return subjects.PartitionAPISubject(prefix, subjects.Partition(stream, partitions), op, stream)
	}
	return subject
}

// checkRouting publishes requests for random streams, from every
// connection of pubs, each carrying its own subject, and checks that each
// reaches sub's subscription to ">" exactly once, on the subject
// wantSubject predicts. ready is called once sub's subscription is in
// place, to wait until the publishers' servers see it.
func checkRouting(t *testing.T, seed uint64, prefix string, partitions int, sub *nats.Conn, ready func(), pubs ...*nats.Conn) {
	t.Helper()
	got, err := sub.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	if err := got.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	ready()

	// Besides random requests, the subjects that must stay as they are:
	// requests that name no stream (answered invalid_stream by any
	// worker), service discovery, events; and an unknown operation, mapped
	// like any request (its partition gets no responders).
	r := rand.New(rand.NewPCG(seed, 7))
	var sent []string
	for range 400 {
		sent = append(sent, subjects.APISubject(prefix, subjects.Ops[r.IntN(len(subjects.Ops))], subjects.RandomName(r)))
	}
	sent = append(sent,
		prefix+".api.get", prefix+".api.list", prefix+".api.fetch", prefix+".api",
		"$SRV.PING", "$SRV.INFO.persist", prefix+".ev.acme", prefix+".ev.acme.docs",
		subjects.APISubject(prefix, subjects.OpList, "acme"),
		subjects.APISubject(prefix, "fetch", "acme.docs"),
	)
	want := map[string]int{} // the delivered subject of each sent payload
	for _, s := range sent {
		w := wantSubject(prefix, partitions, s)
		if s == subjects.APISubject(prefix, "fetch", "acme.docs") {
			w = subjects.PartitionAPISubject(prefix, subjects.Partition("acme", partitions), "fetch", "acme.docs")
		}
		want[w+" "+s] += len(pubs)
	}
	for _, nc := range pubs {
		for _, s := range sent {
			if err := nc.Publish(s, []byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	seen := map[int]bool{}
	for n := len(sent) * len(pubs); n > 0; n-- {
		msg, err := got.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("%d messages not delivered: %v; still expected %v", n, err, want)
		}
		key := msg.Subject + " " + string(msg.Data)
		if want[key] == 0 {
			t.Fatalf("%q delivered on %q, want %q", msg.Data, msg.Subject, wantSubject(prefix, partitions, string(msg.Data)))
		}
		want[key]--
		if part, _, _, err := subjects.ParsePartitionAPI(prefix, msg.Subject, partitions); err == nil {
			seen[part] = true
		}
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := got.NextMsg(10 * time.Millisecond); err == nil {
		t.Fatalf("extra message %q on %q", msg.Data, msg.Subject)
	}
	if partitions <= 8 && len(seen) != partitions {
		t.Fatalf("requests reached partitions %v of %d", slices.Sorted(maps.Keys(seen)), partitions)
	}
}

func TestPartitionMappings_ValidForServer(t *testing.T) {
	for _, n := range []int{1, 8, subjects.MaxPartitions} {
		m, err := subjects.PartitionMappings("app.persist", n)
		if err != nil {
			t.Fatal(err)
		}
		for src, dest := range m {
			if err := server.ValidateMapping(src, dest); err != nil {
				t.Fatalf("server.ValidateMapping(%q, %q) = %v", src, dest, err)
			}
		}
	}
}

// TestPartition_Server routes requests through one server configured with
// the mappings, for several prefixes and numbers of partitions.
func TestPartition_Server(t *testing.T) {
	for i, tc := range []struct {
		prefix     string
		partitions int
	}{{subjects.DefaultPrefix, 8}, {subjects.DefaultPrefix, 1}, {"app.persist", 3}, {"p", subjects.MaxPartitions}} {
		t.Run(fmt.Sprintf("%s/%d", tc.prefix, tc.partitions), func(t *testing.T) {
			s := startServer(t, testConfig(t, tc.prefix, tc.partitions, ""))
			sub, pub := connect(t, s, "u", "p"), connect(t, s, "u", "p")
			checkRouting(t, uint64(i), tc.prefix, tc.partitions, sub, func() {}, pub, sub)
		})
	}
}

// TestPartition_Cluster routes requests published on every node of a
// three-node cluster, each with the mappings, to a subscriber on the
// third: the server a client publishes to maps the subject, and every one
// maps it the same way.
func TestPartition_Cluster(t *testing.T) {
	const partitions = 8
	servers := startCluster(t, func(i int) *server.Options {
		return testConfig(t, subjects.DefaultPrefix, partitions, fmt.Sprintf("server_name: n%d\ncluster { name: persist }\n", i))
	})
	var pubs []*nats.Conn
	for _, s := range servers {
		pubs = append(pubs, connect(t, s, "u", "p"))
	}
	ready := func() {
		probe := subjects.PartitionAPISubject(subjects.DefaultPrefix, 0, subjects.OpGet, "x")
		eventually(t, "the subscription on every node", func() bool {
			for _, s := range servers {
				if acc, err := s.LookupAccount("PERSIST"); err != nil || !acc.SubscriptionInterest(probe) {
					return false
				}
			}
			return true
		})
	}
	checkRouting(t, 99, subjects.DefaultPrefix, partitions, pubs[2], ready, pubs...)
}

// TestPartition_TenantAccounts runs the mappings in the account of the
// worker when tenants are accounts of their own (testdata/tenants.conf):
// a tenant's request, imported into the worker's account, is mapped there,
// after the tenant's permissions were checked on the subject it
// published, so the tenant keeps its permissions on persist.api.*.acme
// and cannot reach a partition subject at all.
func TestPartition_TenantAccounts(t *testing.T) {
	const partitions = 8
	s := startServer(t, loadConfig(t, `
accounts {
  PERSIST {
    users: [{user: worker, password: w}]
`+mappingsBlock(t, subjects.DefaultPrefix, partitions, "    ")+`
    exports: [
      { service: "persist.api.*.acme", accounts: [ACME], response_type: stream }
      { service: "persist.api.*.acme.>", accounts: [ACME], response_type: stream }
    ]
  }
  ACME {
    users: [{user: acme, password: a, permissions: {
      publish: ["persist.api.*.acme", "persist.api.*.acme.>", "persist.part.>"]
      subscribe: ["_INBOX.>"]
    }}]
    imports: [
      { service: { account: PERSIST, subject: "persist.api.*.acme" } }
      { service: { account: PERSIST, subject: "persist.api.*.acme.>" } }
    ]
  }
}
`))
	worker := connect(t, s, "worker", "w")
	if _, err := worker.Subscribe("persist.part.*.api.>", func(m *nats.Msg) {
		if err := m.Respond([]byte(m.Subject)); err != nil {
			t.Error(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := worker.Flush(); err != nil {
		t.Fatal(err)
	}
	acme := connect(t, s, "acme", "a")
	for _, stream := range []string{"acme", "acme.docs", "acme.projects.notes%2Etxt"} {
		m, err := acme.Request(subjects.APISubject(subjects.DefaultPrefix, subjects.OpGet, stream), nil, 10*time.Second)
		if err != nil {
			t.Fatalf("request for %s: %v", stream, err)
		}
		if got, want := string(m.Data), subjects.PartitionAPISubject(subjects.DefaultPrefix, subjects.Partition(stream, partitions), subjects.OpGet, stream); got != want {
			t.Fatalf("request for %s arrived on %q, want %q", stream, got, want)
		}
	}
	// Allowed by its permissions, but no subject of its account leads to
	// the worker's partitions.
	if _, err := acme.Request("persist.part.7.api.get.acme", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request on a partition subject from a tenant account = %v, want no responders", err)
	}
}
