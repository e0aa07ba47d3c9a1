package broker

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// page is a getall page as a client sees it: every message's headers and
// data, and the terminator's headers.
type page struct {
	msgs []string
	end  nats.Header
}

func (f *fixture) page(tb testing.TB, stream string, start uint64) page {
	tb.Helper()
	msgs, end := f.getAll(tb, stream, `{"start_seq":`+strconv.FormatUint(start, 10)+`,"max_msgs":10}`)
	var p page
	for _, m := range msgs {
		p.msgs = append(p.msgs, fmt.Sprintf("%v %q", m.Header, m.Data))
	}
	p.end = end.Header
	return p
}

// hits is the number of getall pages sent from memory.
func (f *fixture) hits() uint64 {
	f.b.ahead.mu.Lock()
	defer f.b.ahead.mu.Unlock()
	return f.b.ahead.hits
}

// fill writes n keyed messages with a user header to stream.
func (f *fixture) fill(tb testing.TB, stream string, n int, tag string) {
	tb.Helper()
	var items []string
	for i := range n {
		items = append(items, fmt.Sprintf(`{"data":"%s","key":"k%d","headers":{"X-Tag":["%s"]}}`, "eA==", i, tag))
	}
	f.call(tb, subjects.OpSetMany, stream, "["+strings.Join(items, ",")+"]", nil)
}

func TestPrefetch_SamePages(t *testing.T) {
	f := newFixture(t, Options{})
	f.fill(t, "acme.r", 35, "a")
	// Read in order, each page once more after it: the first answer of a
	// page after the first comes from memory, the second from the store.
	for start := uint64(1); ; {
		ahead := f.page(t, "acme.r", start)
		again := f.page(t, "acme.r", start)
		if !reflect.DeepEqual(ahead, again) {
			t.Fatalf("page from %d read ahead:\n%v\nread again:\n%v", start, ahead, again)
		}
		if ahead.end.Get(subjects.HeaderNumPending) == "0" {
			break
		}
		start, _ = strconv.ParseUint(ahead.end.Get(subjects.HeaderNextSeq), 10, 64)
	}
	if hits := f.hits(); hits != 3 {
		t.Fatalf("pages sent from memory = %d, want 3", hits)
	}
}

func TestPrefetch_NeverStale(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(f *fixture)
	}{
		{"Delete", func(f *fixture) { f.call(t, subjects.OpDelete, "acme.r", `{"seq":12}`, nil) }},
		{"Replace", func(f *fixture) { f.set(t, "acme.r", "new", hdr(subjects.HeaderKey, "k13")) }},
		{"Append", func(f *fixture) { f.set(t, "acme.r", "new", nil) }},
		{"Config", func(f *fixture) { f.call(t, subjects.OpConfig, "acme.r", `{"desc":"changed"}`, nil) }},
		{"Recreate", func(f *fixture) {
			f.call(t, subjects.OpDestroy, "acme.r", ``, nil)
			f.fill(t, "acme.r", 25, "b")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			f.fill(t, "acme.r", 25, "a")
			f.page(t, "acme.r", 1) // reads 11-20 ahead
			tc.change(f)
			got := f.page(t, "acme.r", 11)
			if hits := f.hits(); hits != 0 {
				t.Fatalf("a page read before the change was sent (%d hits)", hits)
			}
			f.b.forgetPrefetch("acme.r")
			want := f.page(t, "acme.r", 11)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("page 11 after a change:\n%v\nfrom the store:\n%v", got, want)
			}
		})
	}
}

func TestPrefetch_Bounded(t *testing.T) {
	var r readAhead
	r.max = 100
	r.put("a", &aheadPage{bytes: 60})
	r.put("b", &aheadPage{bytes: 30})
	r.put("c", &aheadPage{bytes: 50}) // pushes out a, the oldest
	r.put("d", &aheadPage{bytes: 101})
	if r.pages["a"] != nil || r.pages["b"] == nil || r.pages["c"] == nil || r.pages["d"] != nil || r.bytes != 80 {
		t.Fatalf("pages %v, %d bytes; want b and c, 80 bytes", r.pages, r.bytes)
	}
	if r.take("b") == nil || r.take("b") != nil || r.bytes != 50 {
		t.Fatalf("take b twice: %d bytes left, want 50", r.bytes)
	}
	// A page put again is the newest: b, now the oldest, goes.
	r.put("b", &aheadPage{bytes: 30})
	r.put("c", &aheadPage{bytes: 40})
	r.put("e", &aheadPage{bytes: 50})
	if r.pages["b"] != nil || r.pages["c"] == nil || r.pages["e"] == nil || r.bytes != 90 || r.order.Len() != 2 {
		t.Fatalf("pages %v, %d bytes, %d in order; want c and e, 90 bytes", r.pages, r.bytes, r.order.Len())
	}
}

func TestPrefetch_NotWithTTL(t *testing.T) {
	f := newFixture(t, Options{})
	f.call(t, subjects.OpConfig, "acme.ttl", `{"allow_msg_ttl":true}`, nil)
	f.fill(t, "acme.ttl", 25, "a")
	f.page(t, "acme.ttl", 1)
	if pg := f.b.ahead.take("acme.ttl"); pg != nil {
		t.Fatalf("a stream that allows TTLs was read ahead: %d messages", len(pg.msgs))
	}
}
