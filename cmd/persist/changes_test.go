package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestChanges(t *testing.T) {
	w := startWorker(t, nil)
	ctx := context.Background()
	w.ok(t, "", "set", "acme.docs", "a")                   // rev 1, seq 1
	w.ok(t, "", "set", "acme.docs", "b", "--key", "k")     // rev 2, seq 2
	w.ok(t, "", "set", "acme.docs", "c")                   // rev 3, seq 3
	w.ok(t, "", "delete", "acme.docs", "--seq", "1")       // rev 4
	w.ok(t, "", "config", "acme.docs", "--max-msgs", "50") // rev 5

	lines := jsonLines[map[string]any](t, w.ok(t, "", "changes", "acme.docs", "--after", "0", "--json"))
	var got []string
	for _, l := range lines[:len(lines)-1] {
		got = append(got, fmt.Sprintf("%v %v", l["op"], l["revision"]))
	}
	// The set of seq 1 is gone, so it is left out.
	if want := []string{"set 2", "set 3", "delete 4", "config 5"}; !slices.Equal(got, want) {
		t.Fatalf("changes --after 0 = %q, want %q", got, want)
	}
	if end := lines[len(lines)-1]; end["end"] != true || end["revision"] != float64(5) {
		t.Fatalf("last line = %v, want the end at revision 5", end)
	}
	evs := jsonLines[eventJSON](t, strings.Join(strings.SplitAfter(w.ok(t, "", "changes", "acme.docs", "--after", "3", "--json"), "\n")[:2], ""))
	if e := evs[0]; e.Op != "delete" || !slices.Equal(e.Ranges, [][2]uint64{{1, 1}}) || e.Reason != "request" {
		t.Fatalf("first change after 3 = %+v, want the delete of seq 1", e)
	}
	if out := w.ok(t, "", "changes", "acme.docs", "--after", "5"); out != "(acme.docs at revision 5)\n" {
		t.Fatalf("changes at the current revision = %q", out)
	}

	t.Run("ReplacedKey", func(t *testing.T) {
		// A keyed set after R that replaced a held message and is gone:
		// the delete names its key, so a mirror drops the old one too.
		w.ok(t, "", "set", "acme.docs", "b2", "--key", "k") // rev 6, seq 4 replaces seq 2
		w.ok(t, "", "delete", "acme.docs", "--seq", "4")    // rev 7
		evs := jsonLines[eventJSON](t, strings.SplitAfter(w.ok(t, "", "changes", "acme.docs", "--after", "5", "--json"), "\n")[0])
		if e := evs[0]; e.Op != "delete" || !slices.Equal(e.Keys, []string{"k"}) || e.Revision != 7 {
			t.Fatalf("changes after 5 = %+v, want the delete of seq 4 naming key k", e)
		}
		if out := w.ok(t, "", "changes", "acme.docs", "--after", "5"); !strings.Contains(out, `keys "k"`) {
			t.Fatalf("changes after 5 = %q, want the key in the readable line", out)
		}
	})
	t.Run("RevisionGone", func(t *testing.T) {
		r := w.run(t, "", "changes", "acme.docs", "--after", "99")
		if r.code != 1 || !strings.Contains(r.stderr, "(revision_gone, 410)") || !strings.Contains(r.stderr, "getall") {
			t.Fatalf("changes after a future revision = %+v, want exit 1, revision_gone and the way out", r)
		}
	})
	_ = ctx
}

func TestGetAll_FollowGap(t *testing.T) {
	w := startWorker(t, nil)
	w.ok(t, "", "set", "acme.docs", "one") // rev 1
	out, errOut, stop := w.background(t, "getall", "acme.docs", "--follow", "--json")
	eventually(t, "the first message", func() bool { return strings.Contains(out.String(), `"seq":1`) })
	w.ok(t, "", "set", "acme.docs", "two") // rev 2
	eventually(t, "the second message", func() bool { return strings.Contains(out.String(), `"seq":2`) })

	// An event far ahead looks like missed ones: following catches up
	// with changes, which bring what really changed.
	nc, err := nats.Connect(w.url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w.ok(t, "", "delete", "acme.docs", "--seq", "1") // rev 3, printed from the event or the catch-up
	fake := &nats.Msg{Subject: "persist.ev.acme.docs", Header: nats.Header{"Persist-Op": {"delete"}, "Persist-Revision": {"9"}}, Data: []byte(`{"ranges":[[2,2]]}`)}
	if err := nc.PublishMsg(fake); err != nil {
		t.Fatal(err)
	}
	// The fake comes on another connection: wait until it is seen.
	eventually(t, "the catch-up", func() bool { return strings.Contains(errOut.String(), "; catching up") })
	w.ok(t, "", "set", "acme.docs", "three") // rev 4
	eventually(t, "the third message", func() bool { return strings.Contains(out.String(), `"seq":3`) })
	stop()
	var got []string
	for _, l := range jsonLines[eventJSON](t, out.String()) {
		got = append(got, fmt.Sprintf("%s %d", l.Op, l.Revision))
	}
	// Lines 1 and 2 are the message and its event; the fake never shows.
	if want := []string{" 0", "set 2", "delete 3", "set 4"}; !slices.Equal(got, want) {
		t.Fatalf("getall --follow printed %q, want %q", got, want)
	}
}
