package store

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/nats-persist/persist/subjects"
)

func TestHeader_RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    map[string][]string
	}{
		{"None", nil},
		{"One", map[string][]string{"A": {"1"}}},
		{"OrderPerName", map[string][]string{"A": {"3", "1", "2"}, "B": {"x"}}},
		{"EmptyValue", map[string][]string{"A": {""}}},
		{"NoValues", map[string][]string{"A": {}}},
		{"Long", map[string][]string{"Long": {string(bytes.Repeat([]byte("v"), 100000))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeHeader(tt.h)
			got, err := decodeHeader(b)
			if err != nil {
				t.Fatalf("decodeHeader() = %v", err)
			}
			if len(tt.h) == 0 {
				if b != nil || got != nil {
					t.Fatalf("no headers encode as %v, decode as %v", b, got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.h) {
				t.Fatalf("decodeHeader(encodeHeader(%v)) = %v", tt.h, got)
			}
			if !bytes.Equal(encodeHeader(got), b) {
				t.Fatal("encoding is not deterministic")
			}
		})
	}
}

func TestHeader_DecodeGarbage(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
	}{
		{"HugeCount", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"BadVarint", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"ShortName", []byte{1, 5, 'a'}},
		{"ValueCountTooLarge", []byte{1, 1, 'a', 9, 0}},
		{"EmptyName", []byte{1, 0, 0}},
		{"RepeatedName", []byte{2, 1, 'a', 0, 1, 'a', 0}},
		{"Trailing", append(encodeHeader(map[string][]string{"a": {"b"}}), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if h, err := decodeHeader(tt.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeHeader(%v) = %v, %v; want ErrCorrupt", tt.b, h, err)
			}
		})
	}
}

func FuzzDecodeHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeHeader(map[string][]string{"A": {"1", "2"}, "B": {""}}))
	f.Add([]byte{1, 1, 'a', 9, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeHeader() = %v, want an ErrCorrupt error", err)
			}
			return
		}
		// Whatever decodes must encode back to the same bytes.
		if got := encodeHeader(h); len(b) > 0 && len(h) > 0 && !bytes.Equal(got, b) {
			h2, _ := decodeHeader(got)
			if !reflect.DeepEqual(h, h2) {
				t.Fatalf("re-encoding %v changed it to %v", h, h2)
			}
		}
	})
}

func TestValidHeader(t *testing.T) {
	tests := []struct {
		name string
		h    map[string][]string
		ok   bool
	}{
		{"Plain", map[string][]string{"X-Thing": {"a b\tc"}}, true},
		{"EmptyName", map[string][]string{"": {"a"}}, false},
		{"SpaceInName", map[string][]string{"A B": {"a"}}, false},
		{"ColonInName", map[string][]string{"A:B": {"a"}}, false},
		{"NewlineInValue", map[string][]string{"A": {"a\r\nB: c"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validHeader(tt.h); (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("validHeader() = %v, want ok %v", err, tt.ok)
			}
		})
	}
	t.Run("AppendRefuses", func(t *testing.T) {
		ts := openTest(t, nil)
		if r := ts.mustAppend(t, Write{Header: map[string][]string{"A:B": {"x"}}})[0]; !errors.Is(r.Err, ErrInvalid) {
			t.Fatalf("Append() item error = %v, want ErrInvalid", r.Err)
		}
	})
}

func TestData_Decode(t *testing.T) {
	if _, err := decodeData([]byte("not zstd"), flagZstd); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("decodeData(garbage) = %v, want ErrCorrupt", err)
	}
	cfg := subjects.DefaultConfig()
	cfg.CompressionThreshold = 0
	in := bytes.Repeat([]byte("ab"), 50)
	stored, flags := encodeData(in, cfg)
	out, err := decodeData(stored, flags)
	if err != nil || !bytes.Equal(out, in) || flags != flagZstd {
		t.Fatalf("round trip = %q, %v (flags %d)", out, err, flags)
	}
}

func FuzzDecodeData(f *testing.F) {
	z, _ := encodeData(bytes.Repeat([]byte("persist "), 300), Config{Compression: subjects.CompressionZstd, CompressionThreshold: 10})
	f.Add(z, int64(flagZstd))
	f.Add([]byte("plain"), int64(0))
	f.Add(z[:len(z)/2], int64(flagZstd))
	f.Fuzz(func(t *testing.T, stored []byte, flags int64) {
		data, err := decodeData(stored, flags)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeData() = %v, want an ErrCorrupt error", err)
			}
			return
		}
		if flags&flagZstd == 0 && !bytes.Equal(data, stored) {
			t.Fatalf("decodeData(uncompressed) = %q, want %q", data, stored)
		}
	})
}
