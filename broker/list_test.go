package broker

import (
	"slices"
	"strconv"
	"testing"

	"github.com/nats-persist/persist/subjects"
)

func TestList_IndexFollowsTheWorker(t *testing.T) {
	f := newFixture(t, Options{})
	f.set(t, "acme.a", "x", nil)
	// Indexed from the disk now; from here on by the worker's changes.
	for _, p := range []string{"acme", "acme.b"} {
		if l := f.list(t, p, ``); p == "acme" && !slices.Equal(l.Streams, []string{"acme.a"}) {
			t.Fatalf("list %s = %v", p, l.Streams)
		}
	}
	for _, s := range []string{"acme.c", "acme.b", "acme.b.deep", "acmecorp.x"} {
		f.set(t, s, "x", nil)
	}
	f.call(t, subjects.OpDestroy, "acme.a", ``, nil)
	// A setmany that writes nothing creates no stream; one that fails
	// after creating its stream removes it again.
	f.call(t, subjects.OpSetMany, "acme.none", `[{"data":"","key":"k","previous_seq":3}]`, nil)
	f.callErr(t, subjects.OpSet, "acme.gone", "v", hdr(subjects.HeaderKey, "k", subjects.HeaderPreviousSeq, "5"), subjects.ErrWrongLastSequence)
	f.call(t, subjects.OpConfig, "acme.mem", `{"storage":"memory"}`, nil)
	want := []string{"acme.b", "acme.b.deep", "acme.c", "acme.mem"}
	if l := f.list(t, "acme", ``); !slices.Equal(l.Streams, want) || l.More {
		t.Fatalf("list acme = %+v, want %v", l, want)
	}
	if l := f.list(t, "acme.b", ``); !slices.Equal(l.Streams, want[:2]) {
		t.Fatalf("list acme.b = %+v, want %v", l, want[:2])
	}
	if l := f.list(t, "acme", `{"after":"acme.b","limit":2}`); !slices.Equal(l.Streams, want[1:3]) || !l.More {
		t.Fatalf("list acme after acme.b = %+v, want %v and more", l, want[1:3])
	}
	// The index is the disk's: a restarted worker reads the same.
	if err := f.b.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.start(t, Options{}, hooks{noJanitor: true})
	if l := f.list(t, "acme", ``); !slices.Equal(l.Streams, want[:3]) {
		t.Fatalf("list acme after restart = %+v, want %v", l, want[:3])
	}
}

func TestNameIndex_ChangesWhileReading(t *testing.T) {
	var x nameIndex
	disk := []string{"a.2", "a.1", "a.3", "a.1"}
	got, err := x.page("a", "", 10, func() ([]string, error) {
		// Changes reported while the disk is read: whether the read saw
		// them or not, they decide.
		x.add("a.4")
		x.remove("a.3")
		x.remove("a.2")
		x.add("a.2")
		x.add("b.1")
		return disk, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.1", "a.2", "a.4"}
	if !slices.Equal(got, want) {
		t.Fatalf("page = %v, want %v", got, want)
	}
	x.add("a.0")
	got, _ = x.page("a", "a.1", 2, nil)
	if want := []string{"a.2", "a.4"}; !slices.Equal(got, want) {
		t.Fatalf("page after a.1 = %v, want %v", got, want)
	}
}

func TestNameIndex_Bounded(t *testing.T) {
	x := nameIndex{max: 3*nameCost("a.1") + 2*nameCost("a")}
	read := func(names ...string) func() ([]string, error) {
		return func() ([]string, error) { return names, nil }
	}
	reads := 0
	counted := func(names ...string) func() ([]string, error) {
		return func() ([]string, error) { reads++; return names, nil }
	}
	x.page("a", "", 10, read("a.1", "a.2"))
	x.page("b", "", 10, read("b.1"))
	// c does not fit with a and b: a, listed least recently, goes.
	x.page("c", "", 10, read("c.1", "c.2"))
	if _, ok := x.dirs["a"]; ok || x.bytes > x.max {
		t.Fatalf("index holds %v (%d bytes), want a forgotten within %d", x.dirs, x.bytes, x.max)
	}
	// A prefix too large alone is answered and not kept.
	got, _ := x.page("d", "", 10, counted("d.1", "d.2", "d.3", "d.4"))
	if len(got) != 4 || x.dirs["d"] != nil || x.bytes > x.max {
		t.Fatalf("page d = %v, index %v (%d bytes)", got, x.dirs, x.bytes)
	}
	x.page("d", "", 10, counted("d.1", "d.2", "d.3", "d.4"))
	if reads != 2 {
		t.Fatalf("d read %d times, want 2", reads)
	}
	// Creations under a listed prefix count as well: b, listed least
	// recently, goes when c grows.
	x.add("c.3")
	if _, ok := x.dirs["b"]; ok || x.bytes > x.max {
		t.Fatalf("after a creation index holds %v (%d bytes), want b forgotten within %d", x.dirs, x.bytes, x.max)
	}
	// Prefixes without names cost their own name: listing many of them
	// stays within the bound.
	for i := range 100 {
		x.page("e"+strconv.Itoa(i), "", 10, read())
	}
	if x.bytes > x.max || len(x.dirs) > 5 {
		t.Fatalf("after 100 empty prefixes index holds %d prefixes (%d bytes), want within %d bytes", len(x.dirs), x.bytes, x.max)
	}
}
