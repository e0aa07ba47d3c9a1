package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

func TestSet(t *testing.T) {
	w := startWorker(t, nil)
	ctx := context.Background()
	if got, want := w.ok(t, "", "set", "acme.docs", "hello"), "stored seq 1"; !strings.HasPrefix(got, want) {
		t.Fatalf("set = %q, want %q…", got, want)
	}
	// Flags after the arguments, before them, repeated headers, stdin.
	w.ok(t, "from stdin", "set", "--key", "k", "acme.docs", "-H", "X-Color: red", "--header", "X-Color:blue", "-")
	w.ok(t, "also stdin", "--json", "set", "acme.docs")

	m, err := w.cl.Stream("acme.docs").GetKey(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(m.Data), "from stdin"; got != want || m.Seq != 2 {
		t.Fatalf("GetKey(k) = seq %d %q, want seq 2 %q", m.Seq, got, want)
	}
	if got, want := m.Header["X-Color"], []string{"red", "blue"}; !slices.Equal(got, want) {
		t.Fatalf("X-Color = %q, want %q", got, want)
	}
	m, err = w.cl.Stream("acme.docs").Get(ctx, 3)
	if err != nil || string(m.Data) != "also stdin" {
		t.Fatalf("Get(3) = %v, %v; want the payload read from stdin", m, err)
	}

	t.Run("MsgID", func(t *testing.T) {
		first := jsonLines[client.Ack](t, w.ok(t, "", "set", "acme.docs", "x", "--msg-id", "m1", "--json"))[0]
		again := jsonLines[client.Ack](t, w.ok(t, "", "set", "acme.docs", "x", "--msg-id", "m1", "--json"))[0]
		if !again.Duplicate || again.Seq != first.Seq || first.Duplicate {
			t.Fatalf("second set with the same msg id = %+v, first %+v; want a duplicate of the first", again, first)
		}
		if out := w.ok(t, "", "set", "acme.docs", "x", "--msg-id", "m1"); !strings.Contains(out, "nothing written") {
			t.Fatalf("duplicate set printed %q, want it to say nothing was written", out)
		}
	})
	t.Run("PreviousSeq", func(t *testing.T) {
		r := w.run(t, "", "set", "acme.docs", "y", "--key", "k", "--previous-seq", "1")
		if r.code != 1 || !strings.Contains(r.stderr, "(wrong_last_sequence, 409)") {
			t.Fatalf("set with a wrong previous seq = %+v, want exit 1 and wrong_last_sequence", r)
		}
		w.ok(t, "", "set", "acme.docs", "y", "--key", "k", "--previous-seq", "2")
	})
	t.Run("TTL", func(t *testing.T) {
		w.ok(t, "", "config", "acme.ttl", "--allow-msg-ttl")
		w.ok(t, "", "set", "acme.ttl", "short", "--ttl", "1h")
		m, err := w.cl.Stream("acme.ttl").Get(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Duration(m.Expires-m.Time) * time.Millisecond; d != time.Hour {
			t.Fatalf("expires - time = %v, want 1h", d)
		}
	})
	t.Run("StdinTerminal", func(t *testing.T) {
		r := invocation{stdin: "typed\n", terminal: true}.run(ctx, "--server", w.url, "set", "acme.typed")
		if r.code != 0 || !strings.Contains(r.stderr, "end it with Ctrl-D") {
			t.Fatalf("set reading a terminal = %+v, want a hint on stderr", r)
		}
		if m, err := w.cl.Stream("acme.typed").Get(ctx, 1); err != nil || string(m.Data) != "typed\n" {
			t.Fatalf("Get(1) = %v, %v; want what was typed", m, err)
		}
	})
	t.Run("KeyWithSpace", func(t *testing.T) {
		// NATS would trim it: the client refuses, and that is the user's to fix.
		if r := w.run(t, "", "set", "acme.docs", "x", "--key", " padded"); r.code != 2 {
			t.Fatalf("set --key ' padded' = %+v, want exit 2", r)
		}
	})
}

func TestGet(t *testing.T) {
	w := startWorker(t, nil)
	w.ok(t, "", "set", "acme.docs", "one")
	w.ok(t, "", "set", "acme.docs", "two", "--key", "k", "-H", "X-A:1")

	out := w.ok(t, "", "get", "acme.docs", "--seq", "1")
	if !strings.HasPrefix(out, "[1] ") || !strings.Contains(out, "\none\n") {
		t.Fatalf("get --seq 1 = %q, want a [1] line and the payload", out)
	}
	out = w.ok(t, "", "get", "--key", "k", "acme.docs")
	if !strings.Contains(out, `key "k"`) || !strings.Contains(out, "X-A: 1\n") || !strings.Contains(out, "\ntwo\n") {
		t.Fatalf("get --key k = %q, want the key, the header and the payload", out)
	}
	if got, want := w.ok(t, "", "get", "acme.docs", "--seq", "2", "--raw"), "two"; got != want {
		t.Fatalf("get --raw = %q, want %q", got, want)
	}
	m := jsonLines[msgJSON](t, w.ok(t, "", "--json", "get", "acme.docs", "--key", "k"))[0]
	want := msgJSON{Stream: "acme.docs", Seq: 2, Time: m.Time, Key: "k", Headers: map[string][]string{"X-A": {"1"}}, Data: []byte("two")}
	if fmt.Sprint(m) != fmt.Sprint(want) || m.Time == 0 {
		t.Fatalf("get --json = %+v, want %+v", m, want)
	}

	t.Run("NotText", func(t *testing.T) {
		// Escape sequences in a stored message must not reach the terminal.
		ack, err := w.cl.Stream("acme.docs").Set(context.Background(), []byte("\x1b[2Jgotcha"))
		if err != nil {
			t.Fatal(err)
		}
		out := w.ok(t, "", "get", "acme.docs", "--seq", fmt.Sprint(ack.Seq))
		if strings.Contains(out, "\x1b") || !strings.Contains(out, "(10 bytes, not text: use --json or get --raw)") {
			t.Fatalf("get of a message with escape sequences = %q, want them kept off the terminal", out)
		}
		if raw := w.ok(t, "", "get", "acme.docs", "--seq", fmt.Sprint(ack.Seq), "--raw"); raw != "\x1b[2Jgotcha" {
			t.Fatalf("get --raw = %q, want the payload as it is", raw)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		r := w.run(t, "", "get", "acme.docs", "--seq", "9")
		if got, want := r.stderr, "persist: get acme.docs: not found (not_found, 404)\n"; r.code != 1 || got != want {
			t.Fatalf("get of a missing seq: exit %d, stderr %q; want exit 1, %q", r.code, got, want)
		}
	})
}

func TestGetAll(t *testing.T) {
	w := startWorker(t, nil)
	ctx := context.Background()
	var items []client.Item
	for i := range 1500 { // more than one page of the worker's
		items = append(items, client.Item{Data: fmt.Appendf(nil, "m%d", i+1)})
	}
	for chunk := range slices.Chunk(items, client.MaxSetMany) {
		if _, err := w.cl.Stream("acme.log").SetMany(ctx, chunk); err != nil {
			t.Fatal(err)
		}
	}
	msgs := jsonLines[msgJSON](t, w.ok(t, "", "getall", "acme.log", "--json"))
	if len(msgs) != 1500 || msgs[0].Seq != 1 || msgs[1499].Seq != 1500 || string(msgs[1499].Data) != "m1500" {
		t.Fatalf("getall = %d messages, want all 1500 in order", len(msgs))
	}
	msgs = jsonLines[msgJSON](t, w.ok(t, "", "getall", "--start", "10", "acme.log", "--end", "12", "--json"))
	if got := len(msgs); got != 3 || msgs[0].Seq != 10 || msgs[2].Seq != 12 {
		t.Fatalf("getall --start 10 --end 12 = %d messages from %d, want 10..12", got, msgs[0].Seq)
	}
	if out := w.ok(t, "", "getall", "acme.log", "--since", "1h", "--end", "2"); !strings.Contains(out, "[2] ") || !strings.Contains(out, "m2\n") {
		t.Fatalf("getall --since 1h = %q, want seqs 1 and 2", out)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out := w.ok(t, "", "getall", "acme.log", "--since", future); out != "" {
		t.Fatalf("getall --since a future time = %q, want nothing", out)
	}
	if r := w.run(t, "", "getall", "acme.log", "--since", "yesterday"); r.code != 2 || !strings.Contains(r.stderr, "--since") {
		t.Fatalf("getall --since yesterday = %+v, want a usage error naming --since", r)
	}
}

func TestGetAll_Follow(t *testing.T) {
	w := startWorker(t, nil)
	w.ok(t, "", "set", "acme.docs", "before")
	out, _, stop := w.background(t, "getall", "acme.docs", "--follow", "--json")
	// The range is printed after the subscription is in place.
	eventually(t, "the first message", func() bool { return strings.Contains(out.String(), `"seq":1`) })
	w.ok(t, "", "set", "acme.docs", "after")
	w.ok(t, "", "delete", "acme.docs", "--seq", "1")
	eventually(t, "the delete event", func() bool { return strings.Contains(out.String(), `"op":"delete"`) })
	if r := stop(); r.code != 0 {
		t.Fatalf("getall --follow ended with %+v, want exit 0 when interrupted", r)
	}
	lines := jsonLines[eventJSON](t, out.String())
	if len(lines) != 3 {
		t.Fatalf("getall --follow printed %d lines, want 3:\n%s", len(lines), out.String())
	}
	if l := lines[1]; l.Op != subjects.OpSet || l.Seq != 2 || string(*l.Data) != "after" || l.Revision != 2 {
		t.Fatalf("second line = %+v, want the set event of seq 2 at revision 2", l)
	}
	if l := lines[2]; l.Op != subjects.OpDelete || !slices.Equal(l.Ranges, [][2]uint64{{1, 1}}) || l.Reason != "request" {
		t.Fatalf("third line = %+v, want the delete of seq 1", l)
	}
}

func TestDelete(t *testing.T) {
	w := startWorker(t, nil)
	ctx := context.Background()
	st := w.cl.Stream("acme.docs")
	for i := range 10 {
		w.ok(t, "", "set", "acme.docs", fmt.Sprint(i+1))
	}
	w.ok(t, "", "set", "acme.docs", "keyed", "--key", "k")
	tests := []struct {
		args  []string
		count int64
		gone  []uint64
	}{
		{[]string{"--seq", "1"}, 1, []uint64{1}},
		{[]string{"--seqs", "2,3,99"}, 2, []uint64{2, 3}},
		{[]string{"--through", "5"}, 2, []uint64{4, 5}},
		{[]string{"--key", "k"}, 1, []uint64{11}},
		{[]string{"--all", "--force"}, 5, []uint64{6, 10}},
	}
	for _, tt := range tests {
		out := w.ok(t, "", append([]string{"delete", "acme.docs", "--json"}, tt.args...)...)
		if got := jsonLines[map[string]int64](t, out)[0]["count"]; got != tt.count {
			t.Fatalf("delete %v: count %d, want %d", tt.args, got, tt.count)
		}
		for _, seq := range tt.gone {
			if _, err := st.Get(ctx, seq); !errors.Is(err, subjects.ErrNotFound) {
				t.Fatalf("after delete %v: Get(%d) error = %v, want not found", tt.args, seq, err)
			}
		}
	}
	if out := w.ok(t, "", "delete", "acme.docs", "--seq", "1"); out != "deleted 0 messages\n" {
		t.Fatalf("delete of nothing = %q", out)
	}
	t.Run("AllAsks", func(t *testing.T) {
		w.ok(t, "", "set", "acme.keep", "x")
		if r := w.run(t, "", "delete", "acme.keep", "--all"); r.code != 2 || !strings.Contains(r.stderr, "--force") {
			t.Fatalf("delete --all without a terminal = %+v, want exit 2 asking for --force", r)
		}
		r := invocation{stdin: "n\n", terminal: true}.run(ctx, "--server", w.url, "delete", "acme.keep", "--all")
		if r.code != 1 || !strings.Contains(r.stderr, "[y/N]") {
			t.Fatalf("delete --all answered n = %+v, want the question and exit 1", r)
		}
		if inv, _ := w.cl.Stream("acme.keep").Inventory(ctx); inv.Count != 1 {
			t.Fatalf("after answering n: %d messages, want 1", inv.Count)
		}
		r = invocation{stdin: "y\n", terminal: true}.run(ctx, "--server", w.url, "delete", "acme.keep", "--all")
		if inv, _ := w.cl.Stream("acme.keep").Inventory(ctx); r.code != 0 || inv.Count != 0 {
			t.Fatalf("delete --all answered y = %+v, %d messages left; want all gone", r, inv.Count)
		}
	})
}

func TestConfig(t *testing.T) {
	w := startWorker(t, nil)
	ctx := context.Background()
	out := w.ok(t, "", "config", "acme.cfg", "--json",
		"--max-msgs", "100", "--max-bytes", "1MiB", "--max-age", "1d", "--max-msg-size", "64KiB",
		"--max-msgs-per-second", "50", "--max-bytes-per-second", "10MB", "--discard", "new",
		"--allow-msg-ttl", "--duplicate-window", "10m", "--sync", "--storage", "file",
		"--compression", "none", "--compression-threshold", "4KiB", "--desc", `{"team":"docs"}`)
	got := jsonLines[client.Config](t, out)[0]
	want := client.Config{
		MaxMsgs: 100, MaxBytes: 1 << 20, MaxAge: 24 * 3600 * 1000, MaxMsgSize: 64 << 10,
		MaxMsgsPerSecond: 50, MaxBytesPerSecond: 10_000_000, DiscardPolicy: "new",
		AllowMsgTTL: true, DuplicateWindow: 600_000, Sync: true, Storage: "file",
		Compression: "none", CompressionThreshold: 4096, Desc: []byte(`{"team":"docs"}`),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("config = %+v\nwant %+v", got, want)
	}
	stored, err := w.cl.Stream("acme.cfg").Config(ctx)
	if err != nil || fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Fatalf("Config() = %+v, %v; want %+v", stored, err, want)
	}
	// --no- turns a flag off; no flags reads.
	w.ok(t, "", "config", "acme.cfg", "--no-sync", "--no-allow-msg-ttl", "--max-msgs", "unlimited", "--desc", "plain words")
	out = w.ok(t, "", "config", "acme.cfg")
	for _, line := range []string{"sync:                  false", "allow_msg_ttl:         false", "max_msgs:              unlimited", "max_bytes:             1 MiB", `desc:                  "plain words"`} {
		if !strings.Contains(out, line) {
			t.Fatalf("config = %q, want a line %q", out, line)
		}
	}
	for _, bad := range [][]string{{"--max-bytes", "lots"}, {"--max-age", "1.5d"}, {"--discard", "oldest"}, {"--max-msgs", "1.5"}} {
		if r := w.run(t, "", append([]string{"config", "acme.cfg"}, bad...)...); r.code != 2 {
			t.Fatalf("config %v = %+v, want exit 2", bad, r)
		}
	}
	if r := w.run(t, "", "config", "acme.cfg", "--storage", "memory"); r.code != 1 || !strings.Contains(r.stderr, "(bad_request, 400)") {
		t.Fatalf("config --storage memory of a file stream = %+v, want the worker's 400", r)
	}
}

func TestInfo(t *testing.T) {
	w := startWorker(t, nil)
	w.ok(t, "", "set", "acme.docs", "a")
	w.ok(t, "", "set", "acme.docs", "b")
	w.ok(t, "", "config", "acme.docs", "--max-msgs", "10")
	type infoJSON struct {
		Stream string `json:"stream"`
		client.Inventory
		Config client.Config `json:"config"`
	}
	info := jsonLines[infoJSON](t, w.ok(t, "", "info", "acme.docs", "--json"))[0]
	if info.Stream != "acme.docs" || info.Count != 2 || info.FirstSeq != 1 || info.LastSeq != 2 || info.Revision != 3 || info.Config.MaxMsgs != 10 {
		t.Fatalf("info --json = %+v", info)
	}
	out := w.ok(t, "", "info", "acme.docs")
	for _, s := range []string{"Stream acme.docs", "messages:              2", "revision:              3", "max_msgs:              10"} {
		if !strings.Contains(out, s) {
			t.Fatalf("info = %q, want %q in it", out, s)
		}
	}
	if out := w.ok(t, "", "info", "acme.none"); !strings.Contains(out, "first_seq:             none (empty)") {
		t.Fatalf("info of a stream that does not exist = %q, want it empty", out)
	}
}

func TestKeys(t *testing.T) {
	w := startWorker(t, nil)
	var items []client.Item
	var want []string
	for i := range 1200 { // more than one page
		k := fmt.Sprintf("k%04d", i)
		items = append(items, client.Item{Key: k})
		want = append(want, k)
	}
	for chunk := range slices.Chunk(items, client.MaxSetMany) {
		if _, err := w.cl.Stream("acme.kv").SetMany(context.Background(), chunk); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Fields(w.ok(t, "", "keys", "acme.kv"))
	if !slices.Equal(got, want) {
		t.Fatalf("keys = %d keys, want %d in order", len(got), len(want))
	}
	lines := jsonLines[map[string]string](t, w.ok(t, "", "keys", "acme.kv", "--after", "k1197", "--json"))
	if len(lines) != 2 || lines[0]["key"] != "k1198" || lines[1]["key"] != "k1199" {
		t.Fatalf("keys --after k1197 --json = %v", lines)
	}
}

func TestList(t *testing.T) {
	w := startWorker(t, nil)
	for _, s := range []string{"acme", "acme.b", "acme.a.x", "acmecorp.z"} {
		w.ok(t, "", "set", s, "x")
	}
	if got, want := w.ok(t, "", "ls", "acme"), "acme\nacme.a.x\nacme.b\n"; got != want {
		t.Fatalf("ls acme = %q, want %q", got, want)
	}
	lines := jsonLines[map[string]string](t, w.ok(t, "", "ls", "acme", "--after", "acme.a.x", "--json"))
	if len(lines) != 1 || lines[0]["stream"] != "acme.b" {
		t.Fatalf("ls --after --json = %v", lines)
	}
}

func TestDestroy(t *testing.T) {
	w := startWorker(t, nil)
	ctx := context.Background()
	exists := func() bool {
		names, more, err := w.cl.ListPage(ctx, "acme", "", 0)
		return err == nil && !more && slices.Contains(names, "acme.docs")
	}
	w.ok(t, "", "set", "acme.docs", "x")
	if r := w.run(t, "", "destroy", "acme.docs"); r.code != 2 || !strings.Contains(r.stderr, "--force") || !exists() {
		t.Fatalf("destroy without a terminal or --force = %+v, want exit 2 and the stream kept", r)
	}
	r := invocation{stdin: "no\n", terminal: true}.run(ctx, "--server", w.url, "destroy", "acme.docs")
	if r.code != 1 || !strings.Contains(r.stderr, "Destroy stream acme.docs and its 1 message?") || !exists() {
		t.Fatalf("destroy answered no = %+v, want the question, exit 1 and the stream kept", r)
	}
	r = invocation{stdin: "yes\n", terminal: true}.run(ctx, "--server", w.url, "destroy", "acme.docs")
	if r.code != 0 || exists() {
		t.Fatalf("destroy answered yes = %+v, want the stream gone", r)
	}
	w.ok(t, "", "set", "acme.docs", "x")
	if out := w.ok(t, "", "destroy", "acme.docs", "--force"); out != "destroyed acme.docs\n" || exists() {
		t.Fatalf("destroy --force = %q, want the stream gone", out)
	}
	if r := w.run(t, "", "destroy", "-f", "acme.docs"); r.code != 1 || !strings.Contains(r.stderr, "(not_found, 404)") {
		t.Fatalf("destroy of a missing stream = %+v, want exit 1, not_found", r)
	}
}

func TestWatch(t *testing.T) {
	w := startWorker(t, nil)
	subs := w.srv.NumSubscriptions()
	out, _, stop := w.background(t, "watch", "acme.>", "--json")
	eventually(t, "the watch subscription", func() bool { return w.srv.NumSubscriptions() > subs })
	w.ok(t, "", "set", "acme.a", "one", "-H", "X-A:1", "--msg-id", "mine")
	w.ok(t, "", "set", "other", "not watched")
	w.ok(t, "", "set", "acme.b.c", "two", "--key", "k")
	w.ok(t, "", "config", "acme.a", "--max-msgs", "5")
	w.ok(t, "", "destroy", "acme.a", "--force")
	eventually(t, "the destroy event", func() bool { return strings.Contains(out.String(), `"op":"destroy"`) })
	if r := stop(); r.code != 0 {
		t.Fatalf("watch ended with %+v", r)
	}
	evs := jsonLines[eventJSON](t, out.String())
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s %s %d", e.Stream, e.Op, e.Revision))
	}
	want := []string{"acme.a set 1", "acme.b.c set 1", "acme.a config 2", "acme.a destroy 3"}
	if !slices.Equal(got, want) {
		t.Fatalf("watch printed %q, want %q", got, want)
	}
	if e := evs[0]; string(*e.Data) != "one" || !slices.Equal(e.Headers["X-A"], []string{"1"}) || e.Seq != 1 || e.MsgID != "mine" {
		t.Fatalf("first event = %+v, want the set of seq 1 with its header", e)
	}
	if e := evs[2]; e.Config == nil || e.Config.MaxMsgs != 5 {
		t.Fatalf("config event = %+v, want max_msgs 5", e)
	}
	if r := w.run(t, "", "watch", "acme.>.x"); r.code != 2 {
		t.Fatalf("watch of a bad pattern = %+v, want exit 2", r)
	}
}

func TestUsageErrors(t *testing.T) {
	w := startWorker(t, nil)
	tests := [][]string{
		{},
		{"frobnicate"},
		{"get", "acme.docs"},
		{"get", "acme.docs", "--seq", "1", "--key", "k"},
		{"get", "acme.docs", "--seq", "one"},
		{"get", "bad..name", "--seq", "1"},
		{"get", "--seq", "1"},
		{"set", "acme.docs", "x", "--nope"},
		{"set", "acme.docs", "x", "-H", "no colon"},
		{"set", "acme.docs", "x", "--previous-seq", "1"},
		{"delete", "acme.docs"},
		{"delete", "acme.docs", "--seq", "1", "--all"},
		{"delete", "acme.docs", "--seqs", "1,x"},
		{"getall", "acme.docs", "--start", "5", "--end", "2"},
		{"import", "acme.docs", "--batch", "0"},
		{"--prefix", "bad prefix", "get", "acme.docs", "--seq", "1"},
		{"--context", "nosuch", "get", "acme.docs", "--seq", "1"},
	}
	for _, args := range tests {
		r := w.run(t, "", args...)
		if r.code != 2 || r.stdout != "" || !strings.HasPrefix(r.stderr, "persist: ") && len(args) > 0 {
			t.Errorf("persist %s = exit %d, stdout %q, stderr %q; want exit 2 and a message", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	var stdout, stderr strings.Builder
	code := run(ctx, []string{"--help"}, strings.NewReader(""), &stdout, &stderr)
	r := result{stdout.String(), stderr.String(), code}
	if r.code != 0 || !strings.Contains(r.stdout, "Commands:") || !strings.Contains(r.stdout, "getall") {
		t.Fatalf("--help = %+v, want the verbs on stdout", r)
	}
	for _, args := range [][]string{{"getall", "--help"}, {"help", "getall"}, {"getall", "-h"}} {
		r := invocation{}.run(ctx, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "usage: persist getall") || !strings.Contains(r.stdout, "--follow") || !strings.Contains(r.stdout, "Global flags:") {
			t.Fatalf("%v = %+v, want getall's help", args, r)
		}
	}
	r = invocation{}.run(ctx, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "persist ") {
		t.Fatalf("--version = %+v", r)
	}
}

func TestRequestErrors(t *testing.T) {
	w := startWorker(t, nil)
	t.Run("NoWorker", func(t *testing.T) {
		r := w.run(t, "", "--prefix", "elsewhere", "get", "acme.docs", "--seq", "1")
		if want := `persist: get acme.docs: no persist worker is listening on prefix "elsewhere"` + "\n"; r.code != 1 || r.stderr != want {
			t.Fatalf("get on a prefix nobody serves = exit %d, %q; want exit 1, %q", r.code, r.stderr, want)
		}
	})
	t.Run("NoServer", func(t *testing.T) {
		r := invocation{}.run(context.Background(), "--server", "nats://127.0.0.1:1", "--timeout", "1s", "info", "acme")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "persist: connect to nats://127.0.0.1:1: ") {
			t.Fatalf("info without a server = %+v, want exit 1 naming the server", r)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		// Something that takes the request and never answers, on a prefix
		// no worker serves.
		nc, err := nats.Connect(w.url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		var got atomic.Int64
		if _, err := nc.Subscribe("quiet.api.inventory.acme.silent", func(*nats.Msg) { got.Add(1) }); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		r := w.run(t, "", "--prefix", "quiet", "--timeout", "100ms", "--retries", "2", "info", "acme.silent")
		if want := "persist: info acme.silent: no reply within 100ms\n"; r.code != 1 || r.stderr != want {
			t.Fatalf("info of a silent stream = exit %d, %q; want exit 1, %q", r.code, r.stderr, want)
		}
		if n := got.Load(); n != 3 {
			t.Fatalf("the request was sent %d times, want 3 (--retries 2)", n)
		}
	})
	t.Run("Refused", func(t *testing.T) {
		w.ok(t, "", "config", "acme.small", "--max-msg-size", "4", "--discard", "new")
		r := w.run(t, "", "set", "acme.small", "too large")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "persist: set acme.small: ") || !strings.HasSuffix(r.stderr, "(msg_too_large, 413)\n") {
			t.Fatalf("set of a large message = %+v, want exit 1 and msg_too_large", r)
		}
	})
}

func TestParseUnits(t *testing.T) {
	sizes := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"512KiB", 512 << 10}, {"10MB", 10_000_000}, {"1G", 1 << 30},
		{"2 MiB", 2 << 20}, {"-1", -1}, {"unlimited", -1}, {"8B", 8},
	}
	for _, tt := range sizes {
		if got, err := parseSize(tt.in); err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "lots", "1.5MiB", "-2", "KiB", "99999999999TiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) succeeded, want an error", bad)
		}
	}
	millis := []struct {
		in   string
		want int64
	}{{"0", 0}, {"90s", 90_000}, {"1h30m", 5_400_000}, {"30d", 30 * 86_400_000}, {"unlimited", 0}}
	for _, tt := range millis {
		if got, err := parseMillis(tt.in); err != nil || got != tt.want {
			t.Errorf("parseMillis(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "soon", "-1s", "1.5d", "d"} {
		if _, err := parseMillis(bad); err == nil {
			t.Errorf("parseMillis(%q) succeeded, want an error", bad)
		}
	}
	now := time.UnixMilli(1_000_000_000_000)
	if got, err := parseSince("2h", now); err != nil || got != now.Add(-2*time.Hour).UnixMilli() {
		t.Errorf("parseSince(2h) = %d, %v", got, err)
	}
	if got, err := parseSince("2026-01-02T03:04:05Z", now); err != nil || got != time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli() {
		t.Errorf("parseSince(RFC 3339) = %d, %v", got, err)
	}
}

func TestGetAll_FollowDestroy(t *testing.T) {
	w := startWorker(t, nil)
	w.ok(t, "", "set", "acme.docs", "old")
	out, _, stop := w.background(t, "getall", "acme.docs", "--follow", "--json")
	eventually(t, "the first message", func() bool { return strings.Contains(out.String(), `"seq":1`) })
	w.ok(t, "", "destroy", "acme.docs", "--force")
	w.ok(t, "", "set", "acme.docs", "new") // a new stream: seq 1, revision 1 again
	eventually(t, "the new stream's set", func() bool { return strings.Count(out.String(), "\n") == 3 })
	stop()
	lines := jsonLines[eventJSON](t, out.String())
	if l := lines[1]; l.Op != "destroy" {
		t.Fatalf("second line = %+v, want the destroy", l)
	}
	if l := lines[2]; l.Op != "set" || l.Seq != 1 || l.Revision != 1 || string(*l.Data) != "new" {
		t.Fatalf("third line = %+v, want the new stream's seq 1 at revision 1", l)
	}
}
