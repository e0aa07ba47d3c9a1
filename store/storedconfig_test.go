package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"zombiezen.com/go/sqlite"

	"github.com/nats-persist/persist/subjects"
)

// setStoredConfig replaces the config stored in the closed stream file at
// path, as another version of this code could have written it.
func setStoredConfig(tb testing.TB, path, cfg string) {
	tb.Helper()
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite)
	if err != nil {
		tb.Fatal(err)
	}
	if err := execOnce(conn, "UPDATE meta SET config = ?", nil, cfg); err != nil {
		tb.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		tb.Fatal(err)
	}
}

func storedConfigOf(tb testing.TB, path string) map[string]json.RawMessage {
	tb.Helper()
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadOnly)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	var m map[string]json.RawMessage
	if err := execOnce(conn, "SELECT config FROM meta", func(st *sqlite.Stmt) error {
		return json.Unmarshal([]byte(st.ColumnText(0)), &m)
	}); err != nil {
		tb.Fatal(err)
	}
	return m
}

// TestOpen_FutureConfig opens a stream whose stored config was written by
// a later version: a higher config version, fields this version does not
// know, and known fields with values it cannot use. The stream opens and
// works; the unknown fields survive a config change.
func TestOpen_FutureConfig(t *testing.T) {
	ts := openTest(t, nil)
	ts.put(t, data("a"))
	ts.Close()
	ts.Stream = nil
	setStoredConfig(t, ts.path, `{"version":2,"max_msgs":5,"max_age_mode":"strict","future":{"a":[1,2]},
		"max_bytes":"lots","sync":null,"max_age":-3,"discard_policy":"oldest","desc":{"x":1}}`)
	var log bytes.Buffer
	ts.opts.Logger = slog.New(slog.NewTextHandler(&log, nil))
	ts.reopen(t)

	want := subjects.DefaultConfig()
	want.MaxMsgs = 5
	want.Desc = json.RawMessage(`{"x":1}`)
	if got := ts.Config(); !got.Equal(want) {
		t.Fatalf("Config() = %+v, want %+v", got, want)
	}
	if l := log.String(); strings.Count(l, "level=WARN") != 1 || !strings.Contains(l, "max_age_mode") || !strings.Contains(l, "max_bytes") || !strings.Contains(l, ts.path) || !strings.Contains(l, "version=2") {
		t.Fatalf("log = %q, want one warning naming the path, the version, the unknown and the defaulted fields", l)
	}
	ts.reopen(t)
	if l := log.String(); strings.Count(l, "level=WARN") != 1 {
		t.Fatalf("log after a second open = %q, want the one warning of the first", l)
	}
	if m, err := ts.Get(1); err != nil || string(m.Data) != "a" {
		t.Fatalf("Get(1) = %v, %v", m, err)
	}
	if r := ts.put(t, data("b")); r.Seq != 2 {
		t.Fatalf("put() seq = %d, want 2", r.Seq)
	}
	c := ts.Config()
	c.MaxMsgs = 6
	if _, err := ts.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	ts.Close()
	ts.Stream = nil
	stored := storedConfigOf(t, ts.path)
	for name, want := range map[string]string{"version": "2", "max_age_mode": `"strict"`, "future": `{"a":[1,2]}`, "max_msgs": "6", "max_bytes": "-1"} {
		if got := string(stored[name]); got != want {
			t.Errorf("stored %s = %s, want %s", name, got, want)
		}
	}
	ts.reopen(t)
	if got := ts.Config().MaxMsgs; got != 6 {
		t.Fatalf("max_msgs after reopen = %d, want 6", got)
	}
	if got := ts.inventory(t); got.Count != 2 || got.LastSeq != 2 {
		t.Fatalf("Inventory() = %+v, want 2 messages", got)
	}
}

// TestOpen_StoredConfigNotObject checks the one stored config that has no
// sensible reading: it is damage, and the file is left as it is.
func TestOpen_StoredConfigNotObject(t *testing.T) {
	for _, cfg := range []string{`[1]`, `"x"`, `null`, `{"max_msgs":`, ``} {
		ts := openTest(t, nil)
		ts.Close()
		ts.Stream = nil
		setStoredConfig(t, ts.path, cfg)
		before, _ := os.ReadFile(ts.path)
		walBefore, _ := os.ReadFile(ts.path + "-wal")
		if s, err := Open(ts.path, ts.opts); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ts.path) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("Open() with stored config %q = %v, want ErrCorrupt naming the path", cfg, err)
		}
		after, _ := os.ReadFile(ts.path)
		walAfter, _ := os.ReadFile(ts.path + "-wal")
		if !bytes.Equal(before, after) || !bytes.Equal(walBefore, walAfter) {
			t.Fatalf("stored config %q: the file was changed", cfg)
		}
	}
}

func TestParseStoredConfig(t *testing.T) {
	sc, err := parseStoredConfig(defaultConfigJSON)
	if err != nil || !sc.cfg.Equal(subjects.DefaultConfig()) || sc.extra != nil {
		t.Fatalf("parseStoredConfig(defaults) = %+v, %v", sc, err)
	}
	b, err := encodeStoredConfig(subjects.DefaultConfig(), nil)
	if err != nil || string(b) != defaultConfigJSON {
		t.Fatalf("encodeStoredConfig(defaults) = %s, %v; want %s", b, err, defaultConfigJSON)
	}
	// What this version writes, the strict parser of earlier versions
	// reads.
	c := subjects.DefaultConfig()
	c.MaxAge, c.Desc = 1000, json.RawMessage(`"<b>"`)
	b, _ = encodeStoredConfig(c, nil)
	if got, err := subjects.ParseConfigPatch(subjects.DefaultConfig(), b); err != nil || !got.Equal(c) {
		t.Fatalf("ParseConfigPatch(%s) = %+v, %v", b, got, err)
	}
}
