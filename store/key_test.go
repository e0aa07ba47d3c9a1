package store

import (
	"errors"
	"strings"
	"testing"
)

// TestStream_InvalidKey checks that a write with a key the protocol does not
// allow is refused, alone, with ErrInvalid.
func TestStream_InvalidKey(t *testing.T) {
	ts := openTest(t, nil)
	tests := []struct {
		key string
		ok  bool
	}{
		{"k", true},
		{"a b", true},
		{"ключ/ü", true},
		{strings.Repeat("k", 1024), true},
		{strings.Repeat("k", 1025), false},
		{" k", false},
		{"k\t", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{"a\u0085b", false},
		{"\xff", false},
	}
	for _, tt := range tests {
		r := ts.mustAppend(t, Write{Key: tt.key, Data: []byte("x")})[0]
		if (r.Err == nil) != tt.ok || r.Err != nil && !errors.Is(r.Err, ErrInvalid) {
			t.Errorf("Append(key %.20q) = %v, want ok %v", tt.key, r.Err, tt.ok)
		}
	}
}
