package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// tenantUser is one user of testdata/tenants.conf: its credentials, its
// inbox prefix (the only one its permissions let it subscribe to), the
// namespace it may use, and the operations it may call there.
type tenantUser struct {
	name, password string
	inbox          string
	namespace      string
	ops            []string
}

// tenantAllOps are the operations of PROTOCOL.md section 4, in the order
// the test calls them (destroy last: it removes what the others use).
var tenantAllOps = []string{"set", "setmany", "get", "getall", "delete", "config", "keys", "inventory", "list", "changes", "destroy"}

// tenantReadOps are the operations that change nothing. config is not one
// of them: with a body it changes the limits.
var tenantReadOps = []string{"get", "getall", "keys", "inventory", "list", "changes"}

var tenantUsers = []tenantUser{
	{name: "acme", password: "acme-secret", inbox: "_INBOX.acme", namespace: "acme", ops: tenantAllOps},
	{name: "acme-reader", password: "reader-secret", inbox: "_INBOX.acme-reader", namespace: "acme", ops: tenantReadOps},
	{name: "globex", password: "globex-secret", inbox: "_INBOX.globex", namespace: "globex", ops: tenantAllOps},
	// The worker's own user serves requests; it may not send any.
	{name: "worker", password: "worker-secret", inbox: "_INBOX"},
}

// tenantStreams are the streams every user tries every operation on: the
// namespace streams themselves, streams under them, and "acmecorp", which
// begins like "acme" but is another namespace (whole tokens).
var tenantStreams = []string{"acme", "acme.docs", "globex", "globex.docs", "acmecorp.docs"}

// tenantConn is a user's connection and the asynchronous errors the
// server sent it (permission violations arrive that way).
type tenantConn struct {
	nc   *nats.Conn
	errs chan error
}

// tenantServer runs the NATS server of testdata/tenants.conf on a free
// port and returns the host:port to connect to.
func tenantServer(tb testing.TB) string {
	tb.Helper()
	opts, err := server.ProcessConfigFile(filepath.Join("..", "testdata", "tenants.conf"))
	if err != nil {
		tb.Fatalf("ProcessConfigFile: %v", err)
	}
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server did not start")
	}
	tb.Cleanup(s.Shutdown)
	return s.Addr().String()
}

func tenantURL(user, password, host string) string {
	return fmt.Sprintf("nats://%s:%s@%s", user, password, host)
}

// tenantConnect connects as u, with u's inbox prefix, collecting the
// server's asynchronous errors.
func tenantConnect(tb testing.TB, host string, u tenantUser) *tenantConn {
	tb.Helper()
	c := &tenantConn{errs: make(chan error, 1000)}
	nc, err := nats.Connect(tenantURL(u.name, u.password, host),
		nats.CustomInboxPrefix(u.inbox),
		nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}))
	if err != nil {
		tb.Fatalf("connect as %s: %v", u.name, err)
	}
	tb.Cleanup(nc.Close)
	c.nc = nc
	return c
}

// request sends one request and returns its first reply; for getall and
// changes it reads on to the terminator, so that nothing of the page is
// left for the next request.
func (c *tenantConn) request(tb testing.TB, subject, body string) (*nats.Msg, error) {
	tb.Helper()
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(subject, inbox, []byte(body)); err != nil {
		return nil, err
	}
	first, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		return nil, err
	}
	if strings.Contains(subject, ".getall.") || strings.Contains(subject, ".changes.") {
		for m := first; m.Header.Get("Persist-End") == "" && m.Header.Get("Nats-Service-Error-Code") == ""; {
			if m, err = sub.NextMsg(10 * time.Second); err != nil {
				return nil, fmt.Errorf("%s: page not terminated: %w", subject, err)
			}
		}
	}
	return first, nil
}

// refused publishes a request on subject and waits for the server's
// permissions violation naming it.
func (c *tenantConn) refused(tb testing.TB, subject, body string) {
	tb.Helper()
	if err := c.nc.PublishRequest(subject, c.nc.NewRespInbox(), []byte(body)); err != nil {
		tb.Fatalf("publish %s: %v", subject, err)
	}
	c.waitViolation(tb, "Publish", subject)
}

// waitViolation waits for a permissions violation of kind (Publish,
// Subscription) naming subject.
func (c *tenantConn) waitViolation(tb testing.TB, kind, subject string) {
	tb.Helper()
	if err := c.nc.Flush(); err != nil {
		tb.Fatalf("flush: %v", err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), kind) &&
				strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-timeout:
			tb.Fatalf("no permissions violation for %s %q", kind, subject)
		}
	}
}

// tenantState is what the worker's view of a stream is, read by the
// operator: its inventory and config. Every change moves the revision.
func tenantState(tb testing.TB, admin *tenantConn, stream string) string {
	tb.Helper()
	var parts []string
	for _, op := range []string{"inventory", "config"} {
		m, err := admin.request(tb, api(op, stream), "")
		if err != nil {
			tb.Fatalf("admin %s %s: %v", op, stream, err)
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			tb.Fatalf("admin %s %s: error %s %s", op, stream, code, m.Data)
		}
		parts = append(parts, string(m.Data))
	}
	return strings.Join(parts, " ")
}

// tenantBody is the request body of op on a stream whose last seq is seq.
func tenantBody(op string, seq uint64) string {
	switch op {
	case "set":
		return "written by a tenant"
	case "setmany":
		return `[{"data":"eA=="},{"data":"eQ=="}]`
	case "get", "delete":
		return fmt.Sprintf(`{"seq":%d}`, seq)
	case "config":
		return fmt.Sprintf(`{"max_msgs":%d}`, 1000+seq)
	}
	return ""
}

func namespaceOf(stream string) string {
	ns, _, _ := strings.Cut(stream, ".")
	return ns
}

func TestTenants_Permissions(t *testing.T) {
	host := tenantServer(t)
	data := t.TempDir()
	adminURL := tenantURL("admin", "admin-secret", host)
	w := spawnWorker(t, adminURL, "--nats-url", tenantURL("worker", "worker-secret", host), "--data", data)
	// The worker's user may do all the worker does, its start-up checks
	// included: nothing it tries is refused, nothing goes wrong.
	t.Cleanup(func() {
		if out := w.stderr.String(); strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
			t.Errorf("worker logged warnings or errors:\n%s", out)
		}
	})

	admin := tenantConnect(t, host, tenantUser{name: "admin", password: "admin-secret", inbox: "_INBOX"})
	conns := map[string]*tenantConn{}
	for _, u := range tenantUsers {
		conns[u.name] = tenantConnect(t, host, u)
	}

	// seed makes sure stream exists with a message, through the operator,
	// and returns that message's seq.
	seed := func(t *testing.T, stream string) uint64 {
		t.Helper()
		m, err := admin.request(t, api("set", stream), "seeded")
		if err != nil {
			t.Fatalf("seed %s: %v", stream, err)
		}
		var ack struct{ Seq uint64 }
		if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Seq == 0 {
			t.Fatalf("seed %s: reply %s (%v)", stream, m.Data, err)
		}
		return ack.Seq
	}

	t.Run("Operations", func(t *testing.T) {
		for _, u := range tenantUsers {
			for _, op := range tenantAllOps {
				for _, stream := range tenantStreams {
					allowed := namespaceOf(stream) == u.namespace && slices.Contains(u.ops, op)
					name := fmt.Sprintf("%s/%s/%s", u.name, op, stream)
					t.Run(name, func(t *testing.T) {
						seq := seed(t, stream)
						c := conns[u.name]
						subject, body := api(op, stream), tenantBody(op, seq)
						if !allowed {
							before := tenantState(t, admin, stream)
							c.refused(t, subject, body)
							if after := tenantState(t, admin, stream); after != before {
								t.Fatalf("refused %s changed %s:\nbefore %s\nafter  %s", op, stream, before, after)
							}
							return
						}
						m, err := c.request(t, subject, body)
						if op == "changes" && errors.Is(err, nats.ErrNoResponders) {
							// PROTOCOL 1.1's changes is not served by
							// this worker yet; that the server routed
							// the request (no violation) is the proof.
							return
						}
						if err != nil {
							t.Fatalf("%s may %s %s: %v", u.name, op, stream, err)
						}
						if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
							t.Fatalf("%s %s %s: error %s %s", u.name, op, stream, code, m.Data)
						}
						tenantCheckReply(t, op, stream, seq, m)
					})
				}
			}
		}
	})

	t.Run("List", func(t *testing.T) {
		for _, stream := range tenantStreams {
			seed(t, stream)
		}
		for _, tc := range []struct {
			user, prefix, want string
		}{
			{"acme", "acme", `{"streams":["acme","acme.docs"],"more":false}`},
			{"acme-reader", "acme", `{"streams":["acme","acme.docs"],"more":false}`},
			{"acme", "acme.docs", `{"streams":["acme.docs"],"more":false}`},
			{"globex", "globex", `{"streams":["globex","globex.docs"],"more":false}`},
			{"admin", "acmecorp", `{"streams":["acmecorp.docs"],"more":false}`},
		} {
			t.Run(tc.user+"/"+tc.prefix, func(t *testing.T) {
				c := conns[tc.user]
				if tc.user == "admin" {
					c = admin
				}
				m, err := c.request(t, api("list", tc.prefix), "")
				if err != nil {
					t.Fatal(err)
				}
				if got := normalize(t, m.Data); got != canonical(t, tc.want) {
					t.Fatalf("list %s as %s = %s, want %s", tc.prefix, tc.user, m.Data, tc.want)
				}
			})
		}
		// Every namespace at once is the operator's alone.
		for _, u := range tenantUsers {
			conns[u.name].refused(t, "persist.api.list", "")
			conns[u.name].refused(t, "persist.api.list.>", "")
		}
	})

	t.Run("Events", func(t *testing.T) {
		for _, tc := range []struct {
			user    string
			subject string
			allowed bool
		}{
			{"acme", "persist.ev.acme", true},
			{"acme", "persist.ev.acme.>", true},
			{"acme", "persist.ev.globex.docs", false},
			{"acme", "persist.ev.acmecorp.docs", false},
			{"acme", "persist.ev.>", false},
			{"acme-reader", "persist.ev.acme.docs", true},
			{"acme-reader", "persist.ev.globex.>", false},
			{"globex", "persist.ev.globex.>", true},
			{"globex", "persist.ev.acme.>", false},
			{"globex", "persist.ev.acme", false},
			{"worker", "persist.ev.>", false},
			// Inboxes: nobody reads another user's replies.
			{"acme", "_INBOX.>", false},
			{"acme-reader", "_INBOX.acme.>", false},
			{"globex", "_INBOX.acme.>", false},
			{"acme", "_INBOX.globex.>", false},
		} {
			t.Run(tc.user+"/"+tc.subject, func(t *testing.T) {
				c := conns[tc.user]
				sub, err := c.nc.SubscribeSync(tc.subject)
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Unsubscribe()
				if !tc.allowed {
					c.waitViolation(t, "Subscription", tc.subject)
				} else if err := c.nc.Flush(); err != nil {
					t.Fatal(err)
				}
				// Every stream the subject could match changes, and a
				// request of every tenant is answered on its inbox.
				for _, stream := range tenantStreams {
					seed(t, stream)
				}
				for _, u := range tenantUsers[:3] {
					if _, err := conns[u.name].request(t, api("inventory", u.namespace+".docs"), ""); err != nil {
						t.Fatal(err)
					}
				}
				if tc.allowed {
					m, err := sub.NextMsg(10 * time.Second)
					if err != nil {
						t.Fatalf("%s on %s: no event: %v", tc.user, tc.subject, err)
					}
					if got := m.Header.Get("Persist-Op"); got != "set" {
						t.Fatalf("event %s Persist-Op = %q, want set", m.Subject, got)
					}
					return
				}
				// The subscription was refused, so nothing can arrive;
				// give a leak a moment to show anyway.
				if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
					t.Fatalf("%s received %s on refused %s", tc.user, m.Subject, tc.subject)
				}
			})
		}
	})

	t.Run("ReplySubjectAimedAtOthers", func(t *testing.T) {
		// A tenant names another tenant's request or event subject as the
		// reply subject of its own request. Through the service import
		// the answer goes back into the tenant's own account, where
		// those subjects lead nowhere.
		watch, err := conns["globex"].nc.SubscribeSync("persist.ev.globex.>")
		if err != nil {
			t.Fatal(err)
		}
		defer watch.Unsubscribe()
		if err := conns["globex"].nc.Flush(); err != nil {
			t.Fatal(err)
		}
		seed(t, "globex.docs")
		if _, err := watch.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("globex sees no event of its own: %v", err)
		}
		before := tenantState(t, admin, "globex.docs")
		acme := conns["acme"]
		for _, reply := range []string{"persist.api.set.globex.docs", "persist.ev.globex.docs", "persist.api.setmany.globex.docs"} {
			if err := acme.nc.PublishRequest(api("get", "acme.docs"), reply, []byte(`{"seq":1}`)); err != nil {
				t.Fatal(err)
			}
			if err := acme.nc.PublishRequest(api("set", "acme.docs"), reply, []byte("aimed")); err != nil {
				t.Fatal(err)
			}
		}
		if err := acme.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		// The worker applies one stream's requests in order: once a later
		// set of acme.docs is answered, the aimed ones were answered too.
		if m, err := acme.request(t, api("set", "acme.docs"), "after"); err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
			t.Fatalf("acme set after the aimed requests: %v", err)
		}
		if after := tenantState(t, admin, "globex.docs"); after != before {
			t.Fatalf("aimed replies changed globex.docs:\nbefore %s\nafter  %s", before, after)
		}
		if m, err := watch.NextMsg(300 * time.Millisecond); err == nil {
			t.Fatalf("globex received %s %q on its events", m.Subject, m.Data)
		}
	})

	// Only the operator's seeds and the tenants' own requests made files.
	for _, f := range dbFiles(t, data) {
		if !slices.ContainsFunc(tenantStreams, func(s string) bool {
			return f == filepath.Join(strings.Split(s, ".")...)+".db"
		}) {
			t.Errorf("file %s: no stream of the test lives there", f)
		}
	}
}

// tenantCheckReply checks that an allowed request got the real answer of
// its operation.
func tenantCheckReply(t *testing.T, op, stream string, seq uint64, m *nats.Msg) {
	t.Helper()
	var v map[string]any
	switch op {
	case "get", "getall":
		if got, want := m.Header.Get("Persist-Seq"), itoa(seq); op == "get" && got != want {
			t.Fatalf("get Persist-Seq = %q, want %q", got, want)
		}
		if op == "getall" && m.Header.Get("Persist-Seq") == "" {
			t.Fatalf("getall: first reply is not a message: %v", m.Header)
		}
		return
	case "changes":
		if m.Header.Get("Persist-Revision") == "" {
			t.Fatalf("changes: first reply has no Persist-Revision: %v", m.Header)
		}
		return
	case "setmany":
		var items []map[string]any
		if err := json.Unmarshal(m.Data, &items); err != nil || len(items) != 2 || items[0]["seq"] == nil {
			t.Fatalf("setmany reply %s (%v)", m.Data, err)
		}
		return
	}
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("%s reply %q: %v", op, m.Data, err)
	}
	field := map[string]string{"set": "seq", "delete": "count", "config": "max_msgs", "keys": "keys",
		"inventory": "revision", "list": "streams", "destroy": "ok"}[op]
	if _, ok := v[field]; !ok {
		t.Fatalf("%s %s reply %s has no %q", op, stream, m.Data, field)
	}
	if op == "list" && !slices.ContainsFunc(v["streams"].([]any), func(s any) bool { return s == stream }) {
		t.Fatalf("list %s = %s, want it to name the stream", stream, m.Data)
	}
}
