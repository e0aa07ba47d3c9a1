package client_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

// TestClient_RefusesUnsendableHeaders checks that a key or header value
// that NATS would change in transit is refused before anything is sent.
func TestClient_RefusesUnsendableHeaders(t *testing.T) {
	ctx := context.Background()
	s := runServer(t)
	nc := connect(t, s)
	var seen atomic.Int64
	fakeWorker(t, connect(t, s), "persist.api.>", func(req *nats.Msg) {
		seen.Add(1)
		req.Respond([]byte(`{"seq":1,"time":1}`))
	})
	st := client.New(nc).Stream("acme.keys")
	for _, tc := range []struct {
		name string
		opts []client.SetOption
	}{
		{"PaddedKey", []client.SetOption{client.WithKey(" padded ")}},
		{"LeadingSpaceKey", []client.SetOption{client.WithKey(" k")}},
		{"TrailingTabKey", []client.SetOption{client.WithKey("k\t")}},
		{"CRLFKey", []client.SetOption{client.WithKey("a\r\nPersist-Previous-Seq: 0")}},
		{"EmptyKey", []client.SetOption{client.WithKey("")}},
		{"ControlKey", []client.SetOption{client.WithKey("a\x00b")}},
		{"InvalidUTF8Key", []client.SetOption{client.WithKey("\xff")}},
		{"LongKey", []client.SetOption{client.WithKey(strings.Repeat("k", subjects.MaxKeyLen+1))}},
		{"PaddedMsgID", []client.SetOption{client.WithMsgID(" id")}},
		{"LineBreakMsgID", []client.SetOption{client.WithMsgID("a\nb")}},
		{"NegativeTTL", []client.SetOption{client.WithTTL(-time.Second)}},
		{"PaddedValue", []client.SetOption{client.WithHeader(nats.Header{"X-A": {"v "}})}},
		{"LineBreakValue", []client.SetOption{client.WithHeader(nats.Header{"X-A": {"a\rb"}})}},
		{"InjectedHeader", []client.SetOption{client.WithHeader(nats.Header{"X-A": {"a\r\nPersist-Key: k"}})}},
		{"OneOfSeveralValues", []client.SetOption{client.WithHeader(nats.Header{"X-A": {"ok", " bad"}})}},
		{"KeyThroughHeader", []client.SetOption{client.WithHeader(nats.Header{subjects.HeaderKey: {" k "}})}},
		{"EmptyRequestHeader", []client.SetOption{client.WithHeader(nats.Header{subjects.HeaderMsgID: {""}})}},
		{"TwoKeys", []client.SetOption{client.WithHeader(nats.Header{subjects.HeaderKey: {"a", "b"}})}},
		{"UnknownPersistHeader", []client.SetOption{client.WithHeader(nats.Header{"Persist-Sync": {"true"}})}},
		{"WrongCaseRequestHeader", []client.SetOption{client.WithHeader(nats.Header{"persist-key": {"k"}})}},
		{"BadName", []client.SetOption{client.WithHeader(nats.Header{"X A": {"v"}})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := st.Set(ctx, []byte("x"), tc.opts...)
			if !errors.Is(err, client.ErrInvalidHeader) {
				t.Fatalf("Set() error = %v, want ErrInvalidHeader", err)
			}
		})
	}
	// A request that was sent reaches the fake worker before its reply
	// comes back, so one accepted write after the refused ones shows that
	// none of them went out.
	if _, err := st.Set(ctx, []byte("x"), client.WithKey("k")); err != nil {
		t.Fatalf("Set(valid key) error = %v", err)
	}
	if got := seen.Load(); got != 1 {
		t.Fatalf("the worker saw %d requests, want only the valid one", got)
	}
}

// TestClient_HeaderValuesSurvive writes the edge keys and header values
// the client accepts through a real worker and reads them back unchanged.
func TestClient_HeaderValuesSurvive(t *testing.T) {
	ctx := context.Background()
	st := newClient(t).Stream("acme.survive")
	for _, tc := range []struct{ name, key, value string }{
		{"InnerSpace", "a b", "a  b"},
		{"NonASCII", "é\u00a0ü", "é\u00a0ü"},
		{"NoBreakSpaceAtEnds", "\u00a0k\u00a0", "\u00a0v\u00a0"},
		{"InnerTab", "k1", "a\tb"},
		{"EmptyValue", "k2", ""},
		{"Punctuation", "a:b;c=d", "x: y"},
		{"Longest", strings.Repeat("k", subjects.MaxKeyLen), strings.Repeat("v", 4096)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := nats.Header{"X-Value": {tc.value}}
			if _, err := st.Set(ctx, []byte(tc.name), client.WithKey(tc.key), client.WithMsgID("id "+tc.name), client.WithHeader(h)); err != nil {
				t.Fatalf("Set() error = %v", err)
			}
			m, err := st.GetKey(ctx, tc.key)
			if err != nil {
				t.Fatalf("GetKey(%q) error = %v", tc.key, err)
			}
			if m.Key != tc.key || string(m.Data) != tc.name || len(m.Header["X-Value"]) != 1 || m.Header["X-Value"][0] != tc.value {
				t.Fatalf("GetKey(%q) = key %q, data %q, header %q; want them as written", tc.key, m.Key, m.Data, m.Header)
			}
		})
	}
}
