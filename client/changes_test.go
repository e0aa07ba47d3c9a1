package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
)

// TestClient_ChangesUntrusted feeds Changes answers that break the
// protocol: each is an error, never a wrong result or an endless read.
func TestClient_ChangesUntrusted(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	fake := connect(t, s)
	c := client.New(connect(t, s), client.WithRetry(client.Retry{Attempts: 1}))
	set := func(rev, seq string) *nats.Msg {
		return &nats.Msg{Header: nats.Header{"Persist-Op": {"set"}, "Persist-Revision": {rev}, "Persist-Seq": {seq}, "Persist-Time": {"1"}}}
	}
	end := func(rev, pending string) *nats.Msg {
		return &nats.Msg{Header: nats.Header{"Persist-End": {"true"}, "Persist-Revision": {rev}, "Persist-Num-Pending": {pending}}}
	}
	for _, tt := range []struct {
		name    string
		answer  []*nats.Msg
		wantErr error
	}{
		{"RevisionGoesBack", []*nats.Msg{set("5", "1"), set("4", "2"), end("5", "0")}, client.ErrBadReply},
		{"RevisionNotAfter", []*nats.Msg{set("3", "1"), end("3", "0")}, client.ErrBadReply},
		{"TerminatorBehind", []*nats.Msg{set("9", "1"), end("8", "0")}, client.ErrBadReply},
		{"EmptyPagePending", []*nats.Msg{end("9", "4")}, client.ErrBadReply},
		{"BadEvent", []*nats.Msg{{Header: nats.Header{"Persist-Op": {"nap"}, "Persist-Revision": {"4"}}}, end("4", "0")}, client.ErrBadEvent},
		{"Gone", []*nats.Msg{{Header: nats.Header{"Nats-Service-Error": {"gone"}, "Nats-Service-Error-Code": {"410"}}}}, client.ErrRevisionGone},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fakeWorker(t, fake, "persist.api.changes.fake."+tt.name, func(req *nats.Msg) {
				for _, m := range tt.answer {
					m.Subject = req.Reply
					fake.PublishMsg(m)
				}
			})
			ch := c.Stream("fake."+tt.name).Changes(ctx, 3)
			var last error
			for _, err := range ch.All() {
				last = err
			}
			if !errors.Is(last, tt.wantErr) {
				t.Fatalf("Changes() ended with %v, want %v", last, tt.wantErr)
			}
			if ch.Revision() != 0 {
				t.Fatalf("Revision() after a failure = %d, want 0", ch.Revision())
			}
		})
	}
	t.Run("Pages", func(t *testing.T) {
		var mu sync.Mutex
		var asked []string
		fakeWorker(t, fake, "persist.api.changes.fake.pages", func(req *nats.Msg) {
			mu.Lock()
			asked = append(asked, string(req.Data))
			mu.Unlock()
			answer := []*nats.Msg{set("4", "1"), set("6", "2"), end("6", "1")}
			if string(req.Data) != `{"after_revision":3}` {
				answer = []*nats.Msg{{Header: nats.Header{"Persist-Op": {"delete"}, "Persist-Revision": {"7"}}, Data: []byte(`{"ranges":[[1,1]],"keys":["k"]}`)}, end("8", "0")}
			}
			for _, m := range answer {
				m.Subject = req.Reply
				fake.PublishMsg(m)
			}
		})
		ch := c.Stream("fake.pages").Changes(ctx, 3)
		var revs []uint64
		for ev, err := range ch.All() {
			if err != nil {
				t.Fatal(err)
			}
			revs = append(revs, ev.Revision)
			if ev.Stream != "fake.pages" {
				t.Fatalf("event stream = %q", ev.Stream)
			}
		}
		if len(revs) != 3 || revs[2] != 7 || ch.Revision() != 8 {
			t.Fatalf("revisions %v, Revision() %d; want [4 6 7] and 8", revs, ch.Revision())
		}
		mu.Lock()
		defer mu.Unlock()
		if len(asked) != 2 || asked[1] != `{"after_revision":6}` {
			t.Fatalf("requests %q, want the second after revision 6", asked)
		}
	})
}
