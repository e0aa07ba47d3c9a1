package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-persist/persist/client"
)

// changesOf reads every change after rev as "rev op detail" lines.
func changesOf(tb testing.TB, st *client.Stream, after uint64) ([]string, uint64, error) {
	tb.Helper()
	ch := st.Changes(context.Background(), after)
	var got []string
	for ev, err := range ch.All() {
		if err != nil {
			return got, 0, err
		}
		line := fmt.Sprintf("%d %s", ev.Revision, ev.Op)
		switch ev.Op {
		case "set":
			line += fmt.Sprintf(" %d %q %q %q", ev.Msg.Seq, ev.Msg.Key, ev.Msg.Data, ev.MsgID)
		case "delete":
			line += fmt.Sprintf(" %v %v %s", ev.Ranges, ev.Keys, ev.Reason)
		case "config":
			line += fmt.Sprintf(" max_msgs=%d", ev.Config.MaxMsgs)
		}
		got = append(got, line)
	}
	return got, ch.Revision(), nil
}

func TestClient_Changes(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	st := c.Stream("acme.changes")
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.Set(ctx, []byte("a")))                      // rev 1, seq 1
	must(st.Set(ctx, []byte("b"), client.WithKey("k"))) // rev 2, seq 2
	must(st.Set(ctx, []byte("c"), client.WithKey("k"))) // rev 3, seq 3 replaces 2
	must(st.DeleteSeq(ctx, 1))                          // rev 4
	n := int64(100)
	must(st.UpdateConfig(ctx, client.ConfigPatch{MaxMsgs: &n})) // rev 5
	must(st.Set(ctx, []byte("d"), client.WithMsgID("mine")))    // rev 6, seq 4

	got, rev, err := changesOf(t, st, 0)
	if err != nil {
		t.Fatalf("Changes(0) error = %v", err)
	}
	want := []string{
		`3 set 3 "k" "c" ""`,
		`4 delete [[1 1]] [] request`,
		`5 config max_msgs=100`,
		`6 set 4 "" "d" ""`,
	}
	if !slices.Equal(got, want) || rev != 6 {
		t.Fatalf("Changes(0) = %q at %d, want %q at 6", got, rev, want)
	}
	if got, rev, err := changesOf(t, st, 4); err != nil || !slices.Equal(got, want[2:]) || rev != 6 {
		t.Fatalf("Changes(4) = %q at %d, %v; want %q at 6", got, rev, err, want[2:])
	}
	if got, rev, err := changesOf(t, st, 6); err != nil || len(got) != 0 || rev != 6 {
		t.Fatalf("Changes(6) = %q at %d, %v; want nothing at 6", got, rev, err)
	}
	must(st.DeleteKey(ctx, "k")) // rev 7
	if got, _, err := changesOf(t, st, 6); err != nil || !slices.Equal(got, []string{`7 delete [[3 3]] [k] request`}) {
		t.Fatalf("Changes(6) after a keyed delete = %q, %v; want the delete naming its key", got, err)
	}
	if _, _, err := changesOf(t, st, 8); !errors.Is(err, client.ErrRevisionGone) {
		t.Fatalf("Changes(8) above the revision error = %v, want revision_gone", err)
	}
	missing := c.Stream("acme.nothing")
	if got, rev, err := changesOf(t, missing, 0); err != nil || len(got) != 0 || rev != 0 {
		t.Fatalf("Changes(0) of a missing stream = %q at %d, %v; want nothing at 0", got, rev, err)
	}
	if _, _, err := changesOf(t, missing, 1); !errors.Is(err, client.ErrRevisionGone) {
		t.Fatalf("Changes(1) of a missing stream error = %v, want revision_gone", err)
	}

	t.Run("Pages", func(t *testing.T) {
		st := c.Stream("acme.changes.pages")
		fill(t, st, 2500)
		got, rev, err := changesOf(t, st, 0)
		if err != nil || len(got) != 2500 || rev != 2500 {
			t.Fatalf("Changes(0) gave %d changes at revision %d, %v; want 2500 at 2500", len(got), rev, err)
		}
		p, err := st.ChangesPage(ctx, client.ChangesQuery{AfterRevision: 100, MaxMsgs: 10})
		if err != nil || len(p.Events) != 10 || p.Events[0].Revision != 101 || p.NumPending != 2390 || p.Revision != 2500 {
			t.Fatalf("ChangesPage(after 100, 10) = %d events from %v, pending %d, revision %d, %v", len(p.Events), p.Events, p.NumPending, p.Revision, err)
		}
	})
	t.Run("LiveMsgID", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		w, err := st.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		must(st.Set(ctx, []byte("e"), client.WithMsgID("live-id")))
		ack, err := st.Set(ctx, []byte("f"))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := w.Next(ctx)
		if err != nil || ev.MsgID != "live-id" {
			t.Fatalf("Next() = %+v, %v; want the write's msg id", ev, err)
		}
		ev, err = w.Next(ctx)
		if err != nil || len(ev.MsgID) != 22 || ev.Msg.Seq != ack.Seq {
			t.Fatalf("Next() = %+v, %v; want the client's own 22-byte id", ev, err)
		}
	})
}
