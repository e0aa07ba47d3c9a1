package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-persist/persist/subjects"
)

// FuzzStoredConfig checks the stored config reader: it never panics, what
// it accepts is a valid config, and writing that back (with the unknown
// fields it kept) reads the same again.
func FuzzStoredConfig(f *testing.F) {
	f.Add(defaultConfigJSON)
	f.Add(`{}`)
	f.Add(`{"version":2,"max_msgs":5,"new_field":{"a":[1]},"max_bytes":"x","sync":null}`)
	f.Add(`{"max_age":-1,"desc":{"k":"v"},"storage":"memory","compression":"lz4"}`)
	f.Add(`{"max_msgs":1e400,"duplicate_window":9007199254740993,"MAX_MSGS":3}`)
	f.Add(`[1,2]`)
	f.Add(`{"desc":null}`)
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := parseStoredConfig(s)
		if err != nil {
			return
		}
		if err := sc.cfg.Validate(); err != nil {
			t.Fatalf("parseStoredConfig(%q) accepted an invalid config: %v", s, err)
		}
		b, err := encodeStoredConfig(sc.cfg, sc.extra)
		if err != nil {
			t.Fatalf("encodeStoredConfig() = %v", err)
		}
		again, err := parseStoredConfig(string(b))
		if err != nil || !again.cfg.Equal(sc.cfg) || len(again.bad) != 0 {
			t.Fatalf("stored %s reads back as %+v, %v; want %+v", b, again, err, sc.cfg)
		}
		if len(again.extra) != len(sc.extra) {
			t.Fatalf("unknown fields %v came back as %v", sc.extra, again.extra)
		}
	})
}

// FuzzCheckHeader checks the header checks made before SQLite opens a
// file: they never panic, and every refusal is ErrCorrupt.
func FuzzCheckHeader(f *testing.F) {
	tmpl, err := templateBytes()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tmpl[:100], int64(len(tmpl)), int64(-1))
	f.Add(tmpl[:100], int64(len(tmpl)/2), int64(0))
	f.Add(make([]byte, 100), int64(0), int64(4096))
	f.Fuzz(func(t *testing.T, b []byte, size, walSize int64) {
		var h [100]byte
		copy(h[:], b)
		if err := checkHeader("s.db", h, size, walSize); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("checkHeader() = %v, want nil or ErrCorrupt", err)
		}
	})
}

// fuzzStreamFile is a small checkpointed stream file with a few messages
// of every kind, the seed FuzzOpen mutates.
func fuzzStreamFile(f *testing.F) []byte {
	cfg := subjects.DefaultConfig()
	cfg.MaxAge, cfg.AllowMsgTTL, cfg.CompressionThreshold = 3600_000, true, 16
	ts := openTest(f, &cfg)
	ts.put(f, Write{Data: []byte("plain"), Header: map[string][]string{"A": {"1", "2"}}, MsgID: "id"})
	ts.put(f, keyed("k", "keyed payload compressed compressed compressed compressed"))
	ts.put(f, Write{Data: []byte("ttl"), TTL: 3600_000_000_000})
	ts.mu.Lock()
	err := ts.checkpoint(true)
	ts.mu.Unlock()
	if err != nil {
		f.Fatal(err)
	}
	ts.Close()
	ts.Stream = nil
	b, err := os.ReadFile(ts.path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzOpen opens mutated stream files and reads everything in them: no
// panic, a refusal to open is ErrCorrupt, and so is every read error.
func FuzzOpen(f *testing.F) {
	seed := fuzzStreamFile(f)
	f.Add(seed)
	for _, off := range []int{100, 1024, 2048, 3072} {
		if off < len(seed) {
			b := append([]byte(nil), seed...)
			b[off] ^= 0xff
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "s.db")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(p, Options{NoSweep: true})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open() = %v, want nil or ErrCorrupt", err)
			}
			return
		}
		defer s.Close()
		check := func(op string, err error) {
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s = %v, want nil or ErrCorrupt", op, err)
			}
		}
		_, err = s.Read(ReadQuery{}, func(*Message) error { return nil })
		check("Read()", err)
		_, err = s.Get(2)
		check("Get(2)", err)
		_, err = s.GetKey("k")
		check("GetKey(k)", err)
		_, _, err = s.Keys("", 0)
		check("Keys()", err)
		_, err = s.Inventory()
		check("Inventory()", err)
	})
}

// FuzzParseFence checks that a fence file, which another machine wrote,
// never panics the reader, and that what it accepts is a fence it would
// write and read back the same.
func FuzzParseFence(f *testing.F) {
	f.Add([]byte(`{"owner":"A","revision":1034,"seq":1030,"clean":false}`))
	f.Add([]byte(`{"owner":"worker-2","revision":7,"seq":7,"clean":true,"epoch":1}`))
	f.Add([]byte(`{"owner":"","revision":-1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"owner":"A","revision":1e30}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseFence("s.db.fence", b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parseFence(%q) = %v, want ErrCorrupt", b, err)
			}
			return
		}
		if err := validOwner(r.Owner); err != nil || r.Revision > maxFenceValue || r.Seq > maxFenceValue {
			t.Fatalf("parseFence(%q) accepted %+v", b, r)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseFence("s.db.fence", out)
		if err != nil || *again != *r {
			t.Fatalf("parseFence(%s) = %+v, %v; want %+v", out, again, err, r)
		}
	})
}
