package broker

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/nats-persist/persist/subjects"
)

// decodeLocation decodes a locate reply strictly: a field the reply type
// does not have fails the test.
func decodeLocation(tb testing.TB, m *nats.Msg) subjects.Location {
	tb.Helper()
	if we := replyError(m); we != nil {
		tb.Fatalf("locate: error reply %v", we)
	}
	var loc subjects.Location
	if err := decodeStrict(m.Data, &loc); err != nil {
		tb.Fatalf("locate reply %q: %v", m.Data, err)
	}
	return loc
}

// TestLocate_Unpartitioned: the one worker answers locate on an endpoint
// of its own with its id, for a stream that does not exist too, which it
// does not create; an invalid name is a 400; no reply names the worker in
// a header.
func TestLocate_Unpartitioned(t *testing.T) {
	f := newFixture(t, Options{})
	info := f.b.Service().Info()
	if !slices.ContainsFunc(info.Endpoints, func(ep micro.EndpointInfo) bool {
		return ep.Name == subjects.OpLocate && ep.Subject == "persist.api.locate.>"
	}) {
		t.Fatalf("no locate endpoint on persist.api.locate.> in %+v", info.Endpoints)
	}
	m := f.call(t, subjects.OpLocate, "acme.docs", "", nil)
	if got, want := string(m.Data), `{"stream":"acme.docs","worker":"`+info.ID+`","name":"persist"}`; got != want {
		t.Fatalf("locate reply %s, want %s", got, want)
	}
	if got := files(t, f.dir); len(got) != 0 {
		t.Fatalf("locate created files %v", got)
	}
	if m.Header.Get(subjects.HeaderWorker) != "" {
		t.Errorf("unpartitioned reply has %s: %q", subjects.HeaderWorker, m.Header.Get(subjects.HeaderWorker))
	}
	f.set(t, "acme.docs", "x", nil)
	// A body is ignored, as inventory's.
	m = f.call(t, subjects.OpLocate, "acme.docs", `{"x":1}`, nil)
	if loc := decodeLocation(t, m); loc.Stream != "acme.docs" || loc.Worker != info.ID || loc.Partition != nil || loc.PartitionCount != 0 {
		t.Fatalf("locate of an existing stream = %+v", loc)
	}
	m = f.request(t, subjects.OpSet, "acme.docs", []byte("y"), nil)
	if m.Header.Get(subjects.HeaderWorker) != "" {
		t.Errorf("unpartitioned set reply has %s", subjects.HeaderWorker)
	}
	for _, subj := range []string{"persist.api.locate.a%41", "persist.api.locate.acme.a%2e"} {
		m, err := f.nc.Request(subj, nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if we := replyError(m); we == nil || we.Reason != subjects.ErrInvalidStream.Reason {
			t.Errorf("request %s: %q, want 400 invalid_stream", subj, m.Data)
		}
	}
	if got := f.b.eps[subjects.OpLocate].errors.Load(); got != 2 {
		t.Errorf("locate endpoint errors = %d, want 2", got)
	}
}

// TestLocate_Partitioned runs three static workers on a three-node
// cluster: locate through any node answers the owner of the stream's
// partition with the partition, creating nothing; every reply but the
// messages of a stream names its worker in Persist-Worker, errors too;
// a partition not served now answers 503.
func TestLocate_Partitioned(t *testing.T) {
	nodes := startPartitionCluster(t)
	sets := [][]int{{0, 1, 2}, {3, 4, 5}, {6, 7}}
	var bs []*Broker
	owner := map[int]*Broker{}
	for i, set := range sets {
		b := startPartitioned(t, nodes[i], Partitioning{Count: testPartitions, Static: set}, "", hooks{})
		bs = append(bs, b)
		for _, n := range set {
			owner[n] = b
		}
	}
	clients := []*nats.Conn{connectNode(t, nodes[0]), connectNode(t, nodes[1]), connectNode(t, nodes[2])}
	waitFor(t, "the partition subscriptions on every node", func() bool {
		for _, n := range nodes {
			for p := range testPartitions {
				if !n.srv.GlobalAccount().SubscriptionInterest(subjects.PartitionAPISubject(subjects.DefaultPrefix, p, subjects.OpGet, "x")) {
					return false
				}
			}
		}
		return true
	})
	request := func(nc *nats.Conn, op, stream string, body []byte, h nats.Header) *nats.Msg {
		t.Helper()
		m, err := nc.RequestMsg(&nats.Msg{Subject: subjects.APISubject(subjects.DefaultPrefix, op, stream), Data: body, Header: h}, 5*time.Second)
		if err != nil {
			t.Fatalf("%s %s: %v", op, stream, err)
		}
		return m
	}
	// worker checks that m names b in its header.
	worker := func(what string, m *nats.Msg, b *Broker) {
		t.Helper()
		if got, want := m.Header.Get(subjects.HeaderWorker), b.Service().Info().ID; got != want {
			t.Errorf("%s: %s %q, want %q", what, subjects.HeaderWorker, got, want)
		}
	}

	streams := testStreams(t)
	for i, s := range streams {
		n := subjects.Partition(s, testPartitions)
		b := owner[n]
		m := request(clients[i%3], subjects.OpLocate, s, nil, nil)
		loc := decodeLocation(t, m)
		if loc.Stream != s || loc.Worker != b.Service().Info().ID || loc.Name != DefaultName || loc.Partition == nil || *loc.Partition != n || loc.PartitionCount != testPartitions {
			t.Fatalf("locate %s (partition %d) = %s", s, n, m.Data)
		}
		worker("locate "+s, m, b)
		if _, err := os.Stat(b.streamPath(s)); !os.IsNotExist(err) {
			t.Fatalf("locate %s: stream file: %v, want none", s, err)
		}
	}
	// Partition 0 is a partition like any: its number is in the reply.
	s0 := streams[slices.IndexFunc(streams, func(s string) bool { return subjects.Partition(s, testPartitions) == 0 })]
	var fields map[string]json.RawMessage
	if m := request(clients[2], subjects.OpLocate, s0, nil, nil); json.Unmarshal(m.Data, &fields) != nil || string(fields["partition"]) != "0" || string(fields["partition_count"]) != "8" {
		t.Fatalf("locate %s = %s, want partition 0 of 8", s0, m.Data)
	}

	s := streams[0]
	b := owner[subjects.Partition(s, testPartitions)]
	nc := clients[1]
	worker("set", request(nc, subjects.OpSet, s, []byte("v"), nil), b)
	worker("set refused", request(nc, subjects.OpSet, s, []byte("v"), nats.Header{"Persist-Foo": {"1"}}), b)
	worker("setmany", request(nc, subjects.OpSetMany, s, []byte(`[{"data":"eA=="}]`), nil), b)
	worker("inventory", request(nc, subjects.OpInventory, s, nil, nil), b)
	worker("list", request(nc, subjects.OpList, subjects.Namespace(s), nil, nil), b)
	worker("get missing", request(nc, subjects.OpGet, s, []byte(`{"seq":99}`), nil), b)
	m := request(nc, subjects.OpGet, s, []byte(`{"seq":1}`), nil)
	if replyError(m) != nil || m.Header.Get(subjects.HeaderWorker) != "" {
		t.Errorf("get: %v, header %v: want the message without %s", replyError(m), m.Header, subjects.HeaderWorker)
	}
	for _, op := range []string{subjects.OpGetAll, subjects.OpChanges} {
		inbox := nats.NewInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishRequest(subjects.APISubject(subjects.DefaultPrefix, op, s), inbox, nil); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("%s: %v", op, err)
			}
			if m.Header.Get(subjects.HeaderEnd) != "" {
				worker(op+" terminator", m, b)
				break
			}
			if m.Header.Get(subjects.HeaderWorker) != "" {
				t.Errorf("%s: a message of the stream has %s", op, subjects.HeaderWorker)
			}
		}
		sub.Unsubscribe()
	}

	// The requests that name no stream are answered by any worker, named.
	m, err := nc.Request("persist.api.get", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if we := replyError(m); we == nil || !slices.ContainsFunc(bs, func(b *Broker) bool { return b.Service().Info().ID == m.Header.Get(subjects.HeaderWorker) }) {
		t.Errorf("no-stream reply %q, header %v: want 400 naming one of the workers", m.Data, m.Header)
	}

	// A partition not served now: 503, from the worker that refused.
	n := subjects.Partition(s, testPartitions)
	b.parts.until[n].Store(0)
	m = request(clients[0], subjects.OpLocate, s, nil, nil)
	b.parts.until[n].Store(forever)
	if we := replyError(m); we == nil || we.Reason != subjects.ErrUnavailable.Reason {
		t.Fatalf("locate on a partition not served now: %q, want 503 unavailable", m.Data)
	}
	worker("locate refused", m, b)
	// Published on another partition's subject, past the mapping: the
	// worker that received it refuses it.
	wrong := (n + 3) % testPartitions
	m, err = clients[0].Request(subjects.PartitionAPISubject(subjects.DefaultPrefix, wrong, subjects.OpLocate, s), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if we := replyError(m); we == nil || we.Reason != subjects.ErrUnavailable.Reason {
		t.Fatalf("locate on the wrong partition: %q, want 503 unavailable", m.Data)
	}
	worker("locate on the wrong partition", m, owner[wrong])
}
