package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

// runServer starts an embedded NATS server on a free port.
func runServer(tb testing.TB) *server.Server {
	tb.Helper()
	return runServerOpts(tb, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true})
}

// runServerOpts starts an embedded NATS server with opts.
func runServerOpts(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
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

// connect opens a NATS connection to s.
func connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// newClient starts a server and a worker on a fresh data directory and
// returns a client connected to them.
func newClient(tb testing.TB, opts ...client.Option) *client.Client {
	tb.Helper()
	s := runServer(tb)
	nc := connect(tb, s)
	b, err := broker.New(nc, broker.Options{DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	// The worker's subscriptions travel to the server on its own
	// connection; a request on another one could otherwise overtake them.
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown() error = %v", err)
		}
	})
	return client.New(connect(tb, s), opts...)
}

func TestClient_SetGet(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	st := c.Stream("acme.docs")

	ack, err := st.Set(ctx, []byte("one"))
	if err != nil {
		t.Fatalf("Set() error = %v", err)
	}
	if got, want := ack.Seq, uint64(1); got != want {
		t.Fatalf("Set().Seq = %d, want %d", got, want)
	}
	if ack.Time == 0 || ack.Duplicate {
		t.Fatalf("Set() = %+v, want a time and no duplicate", ack)
	}
	hdr := nats.Header{"X-Color": {"red", "blue"}, "Nats-Msg-Id": {"ignored"}}
	ack2, err := st.Set(ctx, []byte("two"), client.WithKey("k"), client.WithHeader(hdr))
	if err != nil {
		t.Fatalf("Set(keyed) error = %v", err)
	}

	m, err := st.Get(ctx, 1)
	if err != nil {
		t.Fatalf("Get(1) error = %v", err)
	}
	if got, want := string(m.Data), "one"; got != want {
		t.Fatalf("Get(1).Data = %q, want %q", got, want)
	}
	if m.Seq != 1 || m.Time != ack.Time || m.Key != "" || m.Header != nil {
		t.Fatalf("Get(1) = %+v, want seq 1, time %d, no key, no headers", m, ack.Time)
	}

	m, err = st.GetKey(ctx, "k")
	if err != nil {
		t.Fatalf("GetKey() error = %v", err)
	}
	if m.Seq != ack2.Seq || m.Key != "k" || string(m.Data) != "two" {
		t.Fatalf("GetKey() = %+v, want seq %d key k", m, ack2.Seq)
	}
	if got, want := m.Header, (nats.Header{"X-Color": {"red", "blue"}}); !equalHeader(got, want) {
		t.Fatalf("GetKey().Header = %v, want %v", got, want)
	}

	t.Run("NotFound", func(t *testing.T) {
		if _, err := st.Get(ctx, 99); !errors.Is(err, subjects.ErrNotFound) {
			t.Fatalf("Get(99) error = %v, want not_found", err)
		}
		if _, err := st.GetKey(ctx, "nope"); !errors.Is(err, subjects.ErrNotFound) {
			t.Fatalf("GetKey(nope) error = %v, want not_found", err)
		}
		var perr *subjects.Error
		if _, err := st.Get(ctx, 99); !errors.As(err, &perr) || perr.Code != 404 {
			t.Fatalf("Get(99) error = %#v, want a *subjects.Error with code 404", err)
		}
	})
	t.Run("WrongLastSequence", func(t *testing.T) {
		_, err := st.Set(ctx, nil, client.WithKey("k"), client.WithPreviousSeq(ack2.Seq+5))
		if !errors.Is(err, subjects.ErrWrongLastSequence) {
			t.Fatalf("Set(previous seq wrong) error = %v, want wrong_last_sequence", err)
		}
		if _, err := st.Set(ctx, nil, client.WithKey("k"), client.WithPreviousSeq(ack2.Seq)); err != nil {
			t.Fatalf("Set(previous seq right) error = %v", err)
		}
		if _, err := st.Set(ctx, nil, client.WithKey("fresh"), client.WithPreviousSeq(0)); err != nil {
			t.Fatalf("Set(previous seq 0, absent key) error = %v", err)
		}
	})
	t.Run("EmptyKey", func(t *testing.T) {
		if _, err := st.Set(ctx, nil, client.WithKey("")); !errors.Is(err, client.ErrInvalidHeader) {
			t.Fatalf("Set(empty key) error = %v, want ErrInvalidHeader", err)
		}
	})
	t.Run("TTLDisabled", func(t *testing.T) {
		if _, err := st.Set(ctx, nil, client.WithTTL(time.Minute)); !errors.Is(err, subjects.ErrTTLDisabled) {
			t.Fatalf("Set(ttl) error = %v, want ttl_disabled", err)
		}
	})
	t.Run("Duplicate", func(t *testing.T) {
		first, err := st.Set(ctx, []byte("a"), client.WithMsgID("id-1"))
		if err != nil {
			t.Fatal(err)
		}
		again, err := st.Set(ctx, []byte("b"), client.WithMsgID("id-1"))
		if err != nil {
			t.Fatal(err)
		}
		if want := (client.Ack{Seq: first.Seq, Time: first.Time, Duplicate: true}); again != want {
			t.Fatalf("Set(same msg id) = %+v, want %+v", again, want)
		}
	})
	t.Run("InvalidName", func(t *testing.T) {
		_, err := c.Stream("acme..docs").Set(ctx, nil)
		if !errors.Is(err, subjects.ErrInvalidName) {
			t.Fatalf("Set() on a bad name error = %v, want ErrInvalidName", err)
		}
	})
}

func equalHeader(a, b nats.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestClient_NoWorker(t *testing.T) {
	c := client.New(connect(t, runServer(t)), client.WithTimeout(2*time.Second))
	_, err := c.Stream("acme").Set(context.Background(), []byte("x"))
	if !errors.Is(err, client.ErrNoWorker) || !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("Set() with no worker error = %v, want ErrNoWorker and nats.ErrNoResponders", err)
	}
	_, err = c.Stream("acme").GetAllPage(context.Background(), client.Query{})
	if !errors.Is(err, client.ErrNoWorker) {
		t.Fatalf("GetAllPage() with no worker error = %v, want ErrNoWorker", err)
	}
	t.Run("Prefix", func(t *testing.T) {
		c := newClient(t, client.WithPrefix("other"))
		if c.Prefix() != "other" {
			t.Fatalf("Prefix() = %q, want other", c.Prefix())
		}
		if _, err := c.Stream("acme").Set(context.Background(), nil); !errors.Is(err, client.ErrNoWorker) {
			t.Fatalf("Set() on a prefix nobody serves error = %v, want ErrNoWorker", err)
		}
	})
}

func TestClient_SetMany(t *testing.T) {
	ctx := context.Background()
	st := newClient(t).Stream("acme.batch")
	prev := uint64(42)
	res, err := st.SetMany(ctx, []client.Item{
		{Data: []byte("a")},
		{Data: []byte("b"), Key: "k", Header: nats.Header{"X-A": {"1"}}},
		{Data: []byte("c"), Key: "k", PreviousSeq: &prev},
		{Data: []byte("d"), MsgID: "m"},
		{Data: []byte("e"), MsgID: "m"},
		{Data: []byte("f"), TTL: time.Second},
		{},
	})
	if err != nil {
		t.Fatalf("SetMany() error = %v", err)
	}
	if got, want := len(res), 7; got != want {
		t.Fatalf("len(SetMany()) = %d, want %d", got, want)
	}
	for i, want := range []error{nil, nil, subjects.ErrWrongLastSequence, nil, nil, subjects.ErrTTLDisabled, nil} {
		if want == nil && res[i].Err != nil || want != nil && !errors.Is(res[i].Err, want) {
			t.Fatalf("SetMany()[%d].Err = %v, want %v", i, res[i].Err, want)
		}
	}
	if got := []uint64{res[0].Seq, res[1].Seq, res[3].Seq, res[6].Seq}; !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("SetMany() seqs = %v, want [1 2 3 4]", got)
	}
	if !res[4].Duplicate || res[4].Seq != res[3].Seq {
		t.Fatalf("SetMany()[4] = %+v, want a duplicate of seq %d", res[4], res[3].Seq)
	}
	m, err := st.GetKey(ctx, "k")
	if err != nil || string(m.Data) != "b" || m.Header.Get("X-A") != "1" {
		t.Fatalf("GetKey(k) = %+v, %v; want b with X-A", m, err)
	}
	if _, err := st.SetMany(ctx, make([]client.Item, client.MaxSetMany+1)); err == nil {
		t.Fatal("SetMany(too many) error = nil")
	}
}

func TestClient_GetAll(t *testing.T) {
	ctx := context.Background()
	st := newClient(t).Stream("acme.all")
	const n = 2500
	for start := 0; start < n; start += client.MaxSetMany {
		items := make([]client.Item, min(client.MaxSetMany, n-start))
		for i := range items {
			items[i].Data = fmt.Appendf(nil, "m%d", start+i+1)
		}
		if _, err := st.SetMany(ctx, items); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("Page", func(t *testing.T) {
		p, err := st.GetAllPage(ctx, client.Query{StartSeq: 10, MaxMsgs: 100})
		if err != nil {
			t.Fatalf("GetAllPage() error = %v", err)
		}
		if got, want := len(p.Msgs), 100; got != want {
			t.Fatalf("len(GetAllPage().Msgs) = %d, want %d", got, want)
		}
		if p.Msgs[0].Seq != 10 || p.Msgs[99].Seq != 109 {
			t.Fatalf("GetAllPage() seqs %d..%d, want 10..109", p.Msgs[0].Seq, p.Msgs[99].Seq)
		}
		if want := (client.Page{Msgs: p.Msgs, LastSeq: n, Revision: n, NumPending: n - 109, NextSeq: 110}); !pageEqual(p, want) {
			t.Fatalf("GetAllPage() = %+v, want %+v", pageHead(p), pageHead(want))
		}
	})
	t.Run("All", func(t *testing.T) {
		var seqs []uint64
		for m, err := range st.GetAll(ctx, client.Query{MaxMsgs: 700}) {
			if err != nil {
				t.Fatalf("GetAll() error = %v", err)
			}
			if want := fmt.Sprintf("m%d", m.Seq); string(m.Data) != want {
				t.Fatalf("GetAll() message %d = %q, want %q", m.Seq, m.Data, want)
			}
			seqs = append(seqs, m.Seq)
		}
		if len(seqs) != n || seqs[0] != 1 || seqs[n-1] != n {
			t.Fatalf("GetAll() gave %d messages, want %d from 1 to %d", len(seqs), n, n)
		}
	})
	t.Run("Range", func(t *testing.T) {
		var count int
		for m, err := range st.GetAll(ctx, client.Query{StartSeq: 1001, EndSeq: 1500, MaxMsgs: 64}) {
			if err != nil {
				t.Fatal(err)
			}
			if m.Seq < 1001 || m.Seq > 1500 {
				t.Fatalf("GetAll(1001..1500) gave seq %d", m.Seq)
			}
			count++
		}
		if count != 500 {
			t.Fatalf("GetAll(1001..1500) gave %d messages, want 500", count)
		}
	})
	t.Run("Break", func(t *testing.T) {
		var count int
		for range st.GetAll(ctx, client.Query{}) {
			if count++; count == 3 {
				break
			}
		}
		if count != 3 {
			t.Fatalf("count = %d, want 3", count)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		p, err := newClient(t).Stream("nobody.here").GetAllPage(ctx, client.Query{})
		if err != nil || len(p.Msgs) != 0 || p.LastSeq != 0 || p.Revision != 0 || p.NumPending != 0 {
			t.Fatalf("GetAllPage(missing stream) = %+v, %v; want an empty page of zeros", pageHead(p), err)
		}
	})
}

// pageHead is a page without its messages, for messages.
func pageHead(p client.Page) client.Page { p.Msgs = nil; return p }

// pageEqual compares the terminator fields of two pages.
func pageEqual(a, b client.Page) bool {
	return a.LastSeq == b.LastSeq && a.Revision == b.Revision && a.NumPending == b.NumPending && a.NextSeq == b.NextSeq
}

func TestClient_Delete(t *testing.T) {
	ctx := context.Background()
	st := newClient(t).Stream("acme.del")
	for i := range 10 {
		opts := []client.SetOption{}
		if i == 9 {
			opts = append(opts, client.WithKey("last"))
		}
		if _, err := st.Set(ctx, []byte{byte(i)}, opts...); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name string
		del  func() (int64, error)
		want int64
	}{
		{"Seq", func() (int64, error) { return st.DeleteSeq(ctx, 1) }, 1},
		{"SeqAgain", func() (int64, error) { return st.DeleteSeq(ctx, 1) }, 0},
		{"Seqs", func() (int64, error) { return st.DeleteSeqs(ctx, 2, 3, 99) }, 2},
		{"Through", func() (int64, error) { return st.DeleteThrough(ctx, 5) }, 2},
		{"Key", func() (int64, error) { return st.DeleteKey(ctx, "last") }, 1},
		{"All", func() (int64, error) { return st.DeleteAll(ctx) }, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.del()
			if err != nil {
				t.Fatalf("delete error = %v", err)
			}
			if got != tt.want {
				t.Fatalf("delete count = %d, want %d", got, tt.want)
			}
		})
	}
	ack, err := st.Set(ctx, nil)
	if err != nil || ack.Seq != 11 {
		t.Fatalf("Set() after DeleteAll = %+v, %v; want seq 11", ack, err)
	}
}

func TestClient_ConfigInventoryKeysList(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	st := c.Stream("acme.cfg")

	cfg, err := st.Config(ctx)
	if err != nil {
		t.Fatalf("Config() error = %v", err)
	}
	if cfg.MaxMsgs != -1 || cfg.DiscardPolicy != "old" || cfg.Storage != "file" || cfg.DuplicateWindow != 120000 {
		t.Fatalf("Config() of a missing stream = %+v, want the defaults", cfg)
	}
	if inv, err := st.Inventory(ctx); err != nil || inv.Count != 0 || inv.LastSeq != 0 || inv.Revision != 0 {
		t.Fatalf("Inventory() of a missing stream = %+v, %v; want zeros", inv, err)
	}

	three, ttl := int64(3), true
	cfg, err = st.UpdateConfig(ctx, client.ConfigPatch{MaxMsgs: &three, AllowMsgTTL: &ttl, Desc: []byte(`{"owner":"docs"}`)})
	if err != nil {
		t.Fatalf("UpdateConfig() error = %v", err)
	}
	if cfg.MaxMsgs != 3 || !cfg.AllowMsgTTL || string(cfg.Desc) != `{"owner":"docs"}` || cfg.MaxBytes != -1 {
		t.Fatalf("UpdateConfig() = %+v", cfg)
	}
	bad := "sometimes"
	if _, err := st.UpdateConfig(ctx, client.ConfigPatch{DiscardPolicy: &bad}); !errors.Is(err, subjects.ErrBadRequest) {
		t.Fatalf("UpdateConfig(bad policy) error = %v, want bad_request", err)
	}

	for _, k := range []string{"b", "a", "c", "d"} {
		if _, err := st.Set(ctx, []byte(k), client.WithKey(k), client.WithTTL(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	inv, err := st.Inventory(ctx)
	if err != nil {
		t.Fatalf("Inventory() error = %v", err)
	}
	if inv.Count != 3 || inv.FirstSeq != 2 || inv.LastSeq != 4 || inv.Revision != 6 || inv.Limits["max_msgs"] != float64(3) {
		t.Fatalf("Inventory() = %+v, want 3 messages 2..4 at revision 6 with max_msgs 3", inv)
	}
	if m, err := st.GetKey(ctx, "d"); err != nil || m.Expires-m.Time != time.Hour.Milliseconds() {
		t.Fatalf("GetKey(d) = %+v, %v; want it to expire an hour after its time", m, err)
	}
	keys, more, err := st.KeysPage(ctx, "", 2)
	if err != nil || !slices.Equal(keys, []string{"a", "c"}) || !more {
		t.Fatalf("Keys(\"\", 2) = %v, %v, %v; want [a c], true", keys, more, err)
	}
	keys, more, err = st.KeysPage(ctx, "a", 0)
	if err != nil || !slices.Equal(keys, []string{"c", "d"}) || more {
		t.Fatalf("Keys(a, 0) = %v, %v, %v; want [c d], false", keys, more, err)
	}

	for _, name := range []string{"acme", "acme.x.y", "acmecorp.z", "other"} {
		if _, err := c.Stream(name).Set(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	names, more, err := c.ListPage(ctx, "acme", "", 0)
	if err != nil || !slices.Equal(names, []string{"acme", "acme.cfg", "acme.x.y"}) || more {
		t.Fatalf("List(acme) = %v, %v, %v", names, more, err)
	}
	names, more, err = c.ListPage(ctx, "acme", "acme", 1)
	if err != nil || !slices.Equal(names, []string{"acme.cfg"}) || !more {
		t.Fatalf("List(acme, after acme, 1) = %v, %v, %v", names, more, err)
	}

	t.Run("Destroy", func(t *testing.T) {
		if err := st.Destroy(ctx); err != nil {
			t.Fatalf("Destroy() error = %v", err)
		}
		if err := st.Destroy(ctx); !errors.Is(err, subjects.ErrNotFound) {
			t.Fatalf("Destroy() again error = %v, want not_found", err)
		}
		if ack, err := st.Set(ctx, nil); err != nil || ack.Seq != 1 {
			t.Fatalf("Set() after Destroy = %+v, %v; want seq 1", ack, err)
		}
	})
}

func TestClient_Watch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := newClient(t).Stream("acme.watch")
	w, err := st.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch() error = %v", err)
	}
	defer w.Stop()

	if _, err := st.Set(ctx, []byte("a"), client.WithKey("k"), client.WithHeader(nats.Header{"X-H": {"v"}})); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Set(ctx, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteSeqs(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	two := int64(2)
	if _, err := st.UpdateConfig(ctx, client.ConfigPatch{MaxMsgs: &two}); err != nil {
		t.Fatal(err)
	}
	if err := st.Destroy(ctx); err != nil {
		t.Fatal(err)
	}

	var evs []client.Event
	for range 5 {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("Next() error = %v", err)
		}
		evs = append(evs, ev)
	}
	for i, ev := range evs {
		if got, want := ev.Revision, uint64(i+1); got != want {
			t.Fatalf("event %d revision = %d, want %d", i, got, want)
		}
	}
	if e := evs[0]; e.Op != "set" || e.Msg.Seq != 1 || e.Msg.Key != "k" || string(e.Msg.Data) != "a" || e.Msg.Header.Get("X-H") != "v" {
		t.Fatalf("event 0 = %+v, want the keyed set", e)
	}
	if e := evs[1]; e.Op != "set" || e.Msg.Seq != 2 {
		t.Fatalf("event 1 = %+v, want set of seq 2", e)
	}
	if e := evs[2]; e.Op != "delete" || e.Reason != "request" || !slices.Equal(e.Ranges, [][2]uint64{{1, 2}}) {
		t.Fatalf("event 2 = %+v, want delete [[1 2]] by request", e)
	}
	if e := evs[3]; e.Op != "config" || e.Config == nil || e.Config.MaxMsgs != 2 {
		t.Fatalf("event 3 = %+v, want config with max_msgs 2", e)
	}
	if e := evs[4]; e.Op != "destroy" {
		t.Fatalf("event 4 = %+v, want destroy", e)
	}
}

// fakeWorker answers every request on subject with reply.
func fakeWorker(tb testing.TB, nc *nats.Conn, subject string, reply func(req *nats.Msg)) {
	tb.Helper()
	sub, err := nc.Subscribe(subject, reply)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
}

func TestClient_UntrustedReplies(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	fake := connect(t, s)
	c := client.New(connect(t, s), client.WithTimeout(5*time.Second))
	msg := func(seq uint64) *nats.Msg {
		return &nats.Msg{Header: nats.Header{"Persist-Seq": {fmt.Sprint(seq)}, "Persist-Time": {"1"}}}
	}
	respond := func(req *nats.Msg, m *nats.Msg) {
		m.Subject = req.Reply
		fake.PublishMsg(m)
	}

	t.Run("EndlessPage", func(t *testing.T) {
		fakeWorker(t, fake, "persist.api.getall.flood", func(req *nats.Msg) {
			for i := range client.MaxPageMsgs + 5 {
				respond(req, msg(uint64(i+1)))
			}
		})
		if _, err := c.Stream("flood").GetAllPage(ctx, client.Query{}); err == nil {
			t.Fatal("GetAllPage() of a page without end error = nil")
		}
	})
	t.Run("BadMessage", func(t *testing.T) {
		fakeWorker(t, fake, "persist.api.getall.badmsg", func(req *nats.Msg) {
			respond(req, &nats.Msg{Header: nats.Header{"Persist-Seq": {"x"}}})
			respond(req, &nats.Msg{Header: nats.Header{"Persist-End": {"true"}}})
		})
		if _, err := c.Stream("badmsg").GetAllPage(ctx, client.Query{}); err == nil {
			t.Fatal("GetAllPage() with a bad seq error = nil")
		}
	})
	t.Run("NoProgress", func(t *testing.T) {
		fakeWorker(t, fake, "persist.api.getall.stuck", func(req *nats.Msg) {
			respond(req, msg(1))
			respond(req, &nats.Msg{Header: nats.Header{"Persist-End": {"true"}, "Persist-Num-Pending": {"5"}, "Persist-Next-Seq": {"1"}}})
		})
		var n int
		var last error
		for _, err := range c.Stream("stuck").GetAll(ctx, client.Query{StartSeq: 1}) {
			if n++; n > 10 {
				t.Fatal("GetAll() keeps asking for the same page")
			}
			last = err
		}
		if last == nil {
			t.Fatal("GetAll() with a next seq that does not move error = nil")
		}
	})
	t.Run("ErrorWithoutBody", func(t *testing.T) {
		fakeWorker(t, fake, "persist.api.set.nobody", func(req *nats.Msg) {
			req.RespondMsg(&nats.Msg{Header: nats.Header{"Nats-Service-Error": {"slow down"}, "Nats-Service-Error-Code": {"429"}}, Data: []byte("{")})
		})
		_, err := c.Stream("nobody").Set(ctx, nil)
		var perr *subjects.Error
		if !errors.As(err, &perr) || perr.Code != 429 || perr.Description != "slow down" || perr.Reason != "unknown" {
			t.Fatalf("Set() error = %#v, want a *subjects.Error with code 429 and reason unknown", err)
		}
	})
	t.Run("ErrorWithoutBodyKnownCode", func(t *testing.T) {
		fakeWorker(t, fake, "persist.api.set.gone", func(req *nats.Msg) {
			req.RespondMsg(&nats.Msg{Header: nats.Header{"Nats-Service-Error": {"gone"}, "Nats-Service-Error-Code": {"404"}}})
		})
		if _, err := c.Stream("gone").Set(ctx, nil); !errors.Is(err, subjects.ErrNotFound) {
			t.Fatalf("Set() error = %v, want not_found", err)
		}
	})
	t.Run("ErrorWithBody", func(t *testing.T) {
		fakeWorker(t, fake, "persist.api.set.body", func(req *nats.Msg) {
			req.RespondMsg(&nats.Msg{Header: nats.Header{"Nats-Service-Error": {"x"}, "Nats-Service-Error-Code": {"429"}},
				Data: []byte(`{"error":{"code":429,"reason":"too_many_streams","description":"full"}}`)})
		})
		if _, err := c.Stream("body").Set(ctx, nil); !errors.Is(err, subjects.ErrTooManyStreams) {
			t.Fatalf("Set() error = %v, want too_many_streams", err)
		}
	})
	t.Run("NotJSON", func(t *testing.T) {
		fakeWorker(t, fake, "persist.api.set.junk", func(req *nats.Msg) { req.Respond([]byte("ok")) })
		if _, err := c.Stream("junk").Set(ctx, nil); err == nil {
			t.Fatal("Set() with a reply that is not JSON error = nil")
		}
	})
	t.Run("SetManyShortReply", func(t *testing.T) {
		fakeWorker(t, fake, "persist.api.setmany.short", func(req *nats.Msg) { req.Respond([]byte(`[{"seq":1,"time":1}]`)) })
		if _, err := c.Stream("short").SetMany(ctx, make([]client.Item, 2)); err == nil {
			t.Fatal("SetMany() with one result for two items error = nil")
		}
	})
}
