package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/client"
)

// fillSource writes a stream with every kind of message an export must
// carry: plain, empty, binary, keyed, with repeated headers, with a TTL,
// and a keyed message replaced later.
func fillSource(tb testing.TB, w *worker, stream string, n int) {
	tb.Helper()
	ctx := context.Background()
	st := w.cl.Stream(stream)
	if _, err := st.UpdateConfig(ctx, client.ConfigPatch{AllowMsgTTL: ptr(true)}); err != nil {
		tb.Fatal(err)
	}
	var items []client.Item
	for i := range n {
		it := client.Item{Data: fmt.Appendf(nil, "message %d", i)}
		switch i % 7 {
		case 1:
			it.Data = nil
		case 2:
			it.Data = []byte{0, 0xff, 0xfe, '\n', 0x80}
		case 3:
			it.Key = fmt.Sprintf("key %d", i%20)
		case 4:
			it.Header = nats.Header{"X-Multi": {"a", "b"}, "X-Other": {"c"}}
		case 5:
			it.TTL = time.Hour + time.Duration(i)*time.Second
		case 6:
			it.Key, it.Header, it.TTL = "shared", nats.Header{"X-N": {fmt.Sprint(i)}}, 2*time.Hour
		}
		items = append(items, it)
	}
	for chunk := range slices.Chunk(items, client.MaxSetMany) {
		res, err := st.SetMany(ctx, chunk)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				tb.Fatal(r.Err)
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

// readAll returns every message of a stream.
func readAll(tb testing.TB, w *worker, stream string) []*client.Msg {
	tb.Helper()
	var out []*client.Msg
	for m, err := range w.cl.Stream(stream).GetAll(context.Background(), client.Query{}) {
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// sameMessages compares two streams message by message: payload, key,
// headers, and expiry up to the time an import takes.
func sameMessages(tb testing.TB, src, dst []*client.Msg) {
	tb.Helper()
	if len(src) != len(dst) {
		tb.Fatalf("target has %d messages, source %d", len(dst), len(src))
	}
	for i, s := range src {
		d := dst[i]
		if string(s.Data) != string(d.Data) || s.Key != d.Key || !sameHeader(s.Header, d.Header) {
			tb.Fatalf("message %d: target %+v, source %+v", i, d, s)
		}
		if (s.Expires == 0) != (d.Expires == 0) {
			tb.Fatalf("message %d: target expires %d, source %d", i, d.Expires, s.Expires)
		}
		// The TTL is what is left of the source's: the same expiry, give
		// or take the time between reading the line and writing it.
		if diff := d.Expires - s.Expires; diff < 0 || diff > 30_000 {
			tb.Fatalf("message %d: target expires %d, %d ms after the source's %d", i, d.Expires, diff, s.Expires)
		}
	}
}

func sameHeader(a, b nats.Header) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

func TestExportImport(t *testing.T) {
	w := startWorker(t, nil)
	fillSource(t, w, "acme.src", 2500)
	src := readAll(t, w, "acme.src")

	exp := w.run(t, "", "export", "acme.src")
	if exp.code != 0 || exp.stderr != "" {
		t.Fatalf("export = exit %d, stderr %q; want 0 and no progress bar when piped", exp.code, exp.stderr)
	}
	if got := strings.Count(exp.stdout, "\n"); got != len(src) {
		t.Fatalf("export wrote %d lines for %d messages", got, len(src))
	}
	w.ok(t, "", "config", "acme.dst", "--allow-msg-ttl")
	r := w.run(t, exp.stdout, "import", "acme.dst", "--json", "--batch", "300")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("import = %+v", r)
	}
	stats := jsonLines[importStats](t, r.stdout)[0]
	if stats != (importStats{Stored: int64(len(src))}) {
		t.Fatalf("import stats = %+v, want %d stored", stats, len(src))
	}
	sameMessages(t, src, readAll(t, w, "acme.dst"))

	t.Run("Again", func(t *testing.T) {
		r := w.run(t, exp.stdout, "import", "acme.dst", "--json")
		if got := jsonLines[importStats](t, r.stdout)[0]; r.code != 0 || got != (importStats{Duplicates: int64(len(src))}) {
			t.Fatalf("second import = %+v, want every message a duplicate", r)
		}
		sameMessages(t, src, readAll(t, w, "acme.dst"))
	})
	t.Run("Expired", func(t *testing.T) {
		// Three hours on, every TTL of the export has run out.
		later := func() time.Time { return time.Now().Add(3 * time.Hour) }
		w.ok(t, "", "config", "acme.late", "--allow-msg-ttl")
		r := invocation{stdin: exp.stdout, now: later}.run(context.Background(), "--server", w.url, "import", "acme.late", "--json")
		var withTTL int64
		for _, m := range src {
			if m.Expires != 0 {
				withTTL++
			}
		}
		want := importStats{Stored: int64(len(src)) - withTTL, Expired: withTTL}
		if got := jsonLines[importStats](t, r.stdout)[0]; r.code != 0 || got != want || withTTL == 0 {
			t.Fatalf("import after the TTLs ran out = %+v, want %+v", r, want)
		}
	})
	t.Run("TTLDisabled", func(t *testing.T) {
		r := w.run(t, exp.stdout, "import", "acme.nottl")
		if r.code != 1 || !strings.Contains(r.stderr, "(ttl_disabled, 400)") || !strings.Contains(r.stderr, "persist config acme.nottl --allow-msg-ttl") {
			t.Fatalf("import of TTL messages into a stream without TTLs = %+v, want the reason and the fix", r)
		}
	})
	t.Run("GetAllJSON", func(t *testing.T) {
		// getall --json writes the same lines: it can be imported too.
		out := w.ok(t, "", "--json", "getall", "acme.src", "--end", "10")
		w.ok(t, "", "config", "acme.few", "--allow-msg-ttl")
		w.ok(t, out, "import", "acme.few", "-")
		var first []*client.Msg
		for _, m := range src {
			if m.Seq <= 10 {
				first = append(first, m)
			}
		}
		sameMessages(t, first, readAll(t, w, "acme.few"))
	})
}

func TestImport_Resume(t *testing.T) {
	w := startWorker(t, nil)
	fillSource(t, w, "acme.src", 1200)
	src := readAll(t, w, "acme.src")
	full := w.ok(t, "", "export", "acme.src")
	w.ok(t, "", "config", "acme.dst", "--allow-msg-ttl")

	// Interrupted: the file ends in the middle of a line.
	lines := strings.SplitAfter(full, "\n")
	cut := strings.Join(lines[:700], "") + lines[700][:len(lines[700])/2]
	r := w.run(t, cut, "import", "acme.dst", "--batch", "250")
	if r.code != 1 || !strings.Contains(r.stderr, "line 701") {
		t.Fatalf("import of a cut file = %+v, want exit 1 naming line 701", r)
	}
	if got := len(readAll(t, w, "acme.dst")); got != 700 {
		t.Fatalf("after the cut import: %d messages, want the 700 whole lines", got)
	}

	r = w.run(t, full, "import", "acme.dst", "--json", "--batch", "250")
	if got, want := jsonLines[importStats](t, r.stdout)[0], (importStats{Stored: int64(len(src)) - 700, Duplicates: 700}); r.code != 0 || got != want {
		t.Fatalf("resumed import = %+v, want %+v", r, want)
	}
	sameMessages(t, src, readAll(t, w, "acme.dst"))
}

func TestImport_BadLines(t *testing.T) {
	w := startWorker(t, nil)
	for _, tt := range []struct{ name, line, want string }{
		{"NotJSON", "hello\n", "line 1: not a message of an export"},
		{"UnknownField", `{"stream":"a","seq":1,"time":1,"data":"","colour":"red"}` + "\n", `unknown field "colour"`},
		{"NoOrigin", `{"data":"aGk="}` + "\n", `needs "stream" and "seq"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := w.run(t, tt.line, "import", "acme.dst")
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("import of %q = %+v, want exit 1 and %q", tt.line, r, tt.want)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	w := startWorker(t, nil)
	fillSource(t, w, "acme.src", 50)
	n := len(readAll(t, w, "acme.src"))
	exp := w.run(t, "", "export", "acme.src", "--progress")
	if exp.code != 0 || !strings.Contains(exp.stderr, "export acme.src [") || !strings.Contains(exp.stderr, fmt.Sprintf("100%% %d of %d messages\n", n, n)) {
		t.Fatalf("export --progress stderr = %q, want a bar that reaches 100%%", exp.stderr)
	}
	// On a terminal the bar is on by default, and --no-progress turns it off.
	inv := invocation{stdin: exp.stdout, terminal: true}
	w.ok(t, "", "config", "acme.dst", "--allow-msg-ttl")
	r := inv.run(context.Background(), "--server", w.url, "import", "acme.dst")
	if r.code != 0 || !strings.Contains(r.stderr, "\rimport acme.dst ") {
		t.Fatalf("import on a terminal = %+v, want a progress line", r)
	}
	r = inv.run(context.Background(), "--server", w.url, "import", "acme.dst", "--no-progress")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("import --no-progress = %+v, want nothing on stderr", r)
	}
}

func TestImport_Interrupted(t *testing.T) {
	w := startWorker(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as Ctrl-C does before the first batch is sent
	line := `{"stream":"acme.src","seq":1,"time":1,"data":"aGk="}` + "\n"
	r := invocation{stdin: line}.run(ctx, "--server", w.url, "import", "acme.dst")
	if r.code != 1 || !strings.Contains(r.stderr, "interrupted; 0 stored, run the same import again within 2m0s (the stream's duplicate window) to go on") {
		t.Fatalf("interrupted import = %+v, want exit 1 and how to go on", r)
	}
	w.ok(t, line, "import", "acme.dst")
	if got := len(readAll(t, w, "acme.dst")); got != 1 {
		t.Fatalf("after the rerun: %d messages, want 1", got)
	}
}
