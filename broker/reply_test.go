package broker

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// A request whose reply subject is under the worker's prefix is refused
// unanswered: the reply would otherwise be published as a request of
// another stream (a set into a stream the client may not write) or as a
// fake event.
func TestBroker_ReplyUnderPrefixRefused(t *testing.T) {
	f := newFixture(t, Options{})
	f.set(t, "acme.x", "mine", nil)
	evs, err := f.nc.SubscribeSync("persist.ev.globex.>")
	if err != nil {
		t.Fatal(err)
	}
	// The worker's own reply goes to these subjects; whatever a worker
	// would publish there is caught by the subscription below.
	for _, reply := range []string{
		"persist.api.set.globex.victim",
		"persist.api.get",
		"persist.ev.globex.victim",
	} {
		for _, subj := range []string{"persist.api.get.acme.x", "persist.api.set.acme.x", "persist.api.get", "persist.api.list.acme"} {
			if err := f.nc.PublishMsg(&nats.Msg{Subject: subj, Reply: reply, Data: []byte(`{"seq":1}`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A request sent after them on the same connection is answered
	// after they were handled (one subscription per operation, in order).
	for _, op := range []string{subjects.OpGet, subjects.OpSet, subjects.OpList} {
		stream, body := "acme.x", `{"seq":1}`
		switch op {
		case subjects.OpSet:
			body = "after"
		case subjects.OpList:
			stream, body = "acme", ""
		}
		f.call(t, op, stream, body, nil)
	}
	m, err := f.nc.Request("persist.api.get", nil, 5*time.Second)
	if err != nil || m.Header.Get("Nats-Service-Error-Code") != "400" {
		t.Fatalf("no-stream request: %v, %v", err, m)
	}
	if got := f.stats(t).BadReplies; got != 12 {
		t.Fatalf("bad_replies = %d, want 12", got)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "globex")); !os.IsNotExist(err) {
		t.Fatalf("a stream of globex was created: %v", err)
	}
	if m, err := evs.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("event published on %s", m.Subject)
	}
	// Only the plain set after them was applied to acme.x.
	var inv struct {
		Count int `json:"count"`
	}
	f.call(t, subjects.OpInventory, "acme.x", "", &inv)
	if inv.Count != 2 {
		t.Fatalf("acme.x has %d messages, want 2", inv.Count)
	}
}
