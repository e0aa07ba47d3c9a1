package client

import (
	"errors"
	"net/textproto"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// overNATS is what a receiver decodes of a header value that nats.go sent:
// nats.go trims the value and turns CR and LF into spaces when it writes a
// header (writeHeaderValue), and nats.DecodeHeadersMsg, which every
// receiver runs, reads it back.
func overNATS(tb testing.TB, name, value string) (string, bool) {
	tb.Helper()
	sent := strings.NewReplacer("\r", " ", "\n", " ").Replace(textproto.TrimString(value))
	h, err := nats.DecodeHeadersMsg([]byte("NATS/1.0\r\n" + name + ": " + sent + "\r\n\r\n"))
	if err != nil || len(h[name]) != 1 {
		return "", false
	}
	return h[name][0], true
}

// FuzzCheckHeader checks that the client sends a header value exactly
// when NATS carries it unchanged, and a key exactly when the protocol
// allows it.
func FuzzCheckHeader(f *testing.F) {
	for _, v := range []string{"k", "", " padded ", "padded ", "\tk", "a\r\nInjected: 1", "a\rb", "a\nb", "a b", "a\tb", "é", "\xff",
		"\u00a0k", "k\u00a0", "a\x00b", "\v", strings.Repeat("k", subjects.MaxKeyLen+1)} {
		for _, name := range []string{subjects.HeaderKey, subjects.HeaderMsgID, "X-A"} {
			f.Add(name, v)
		}
	}
	f.Add("Persist-Foo", "v")
	f.Add("persist-key", "k")
	f.Add("X A", "v")
	f.Fuzz(func(t *testing.T, name, value string) {
		err := checkHeader(nats.Header{name: {value}})
		if err != nil && !errors.Is(err, ErrInvalidHeader) {
			t.Fatalf("checkHeader(%q: %q) = %v, does not wrap ErrInvalidHeader", name, value, err)
		}
		kind := subjects.ClassifyHeader(name)
		if kind == subjects.HeaderBad {
			if err == nil {
				t.Fatalf("checkHeader accepted name %q", name)
			}
			return
		}
		got, ok := overNATS(t, name, value)
		survives := ok && got == value
		want := survives && (kind != subjects.HeaderRequest || value != "") &&
			(name != subjects.HeaderKey || subjects.ValidateKey(value) == nil)
		if (err == nil) != want {
			t.Fatalf("checkHeader(%q: %q) = %v; arrives as %q (%v), want accepted %v", name, value, err, got, ok, want)
		}
	})
}
