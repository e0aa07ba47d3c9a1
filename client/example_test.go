package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
)

// Example writes a keyed message, reads it back and reads the stream
// through. NATS_URL names the server ("" is nats://127.0.0.1:4222),
// which needs a persist worker.
func Example() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	docs := client.New(nc).Stream("example.docs")

	ack, err := docs.Set(ctx, []byte("hello"), client.WithKey("greeting"), client.WithPreviousSeq(0))
	if errors.Is(err, client.ErrWrongLastSequence) {
		fmt.Println("someone else wrote the greeting first")
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println("written at seq", ack.Seq)
	if _, err := docs.Set(ctx, []byte("world")); err != nil {
		log.Fatal(err)
	}

	m, err := docs.GetKey(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s\n", m.Key, m.Data)

	for m, err := range docs.GetAll(ctx, client.Query{}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.Seq, string(m.Data))
	}
	// Output:
	// written at seq 1
	// greeting: hello
	// 1 hello
	// 2 world
}

func ExampleStreamName() {
	fmt.Println(client.StreamName("acme", "projects", "notes.txt"))
	fmt.Println(client.StreamName("acme", "..", "a b"))
	// Output:
	// acme.projects.notes%2Etxt
	// acme.%2E%2E.a%20b
}

// ExampleStream_Set_conditional updates a key only if nobody changed it
// since it was read, and tells a conflict from a failure to retry.
func ExampleStream_Set_conditional() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	st := client.New(nc).Stream("example.counter")
	first, err := st.Set(ctx, []byte("1"), client.WithKey("n"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := st.Set(ctx, []byte("2"), client.WithKey("n"), client.WithPreviousSeq(first.Seq)); err != nil {
		log.Fatal(err)
	}
	_, err = st.Set(ctx, []byte("2 again"), client.WithKey("n"), client.WithPreviousSeq(first.Seq))
	var perr *client.Error
	if errors.As(err, &perr) {
		fmt.Println(perr.Code, perr.Reason, errors.Is(err, client.ErrWrongLastSequence), client.IsRetryable(err))
	}
	// Output:
	// 409 wrong_last_sequence true false
}

// ExampleStream_Keys pages through every key without knowing about pages.
func ExampleStream_Keys() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	c := client.New(nc)
	st := c.Stream("example.keys")
	if _, err := st.SetMany(ctx, []client.Item{{Key: "b"}, {Key: "a"}, {Key: "c"}}); err != nil {
		log.Fatal(err)
	}
	for k, err := range st.Keys(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(k)
	}
	for name, err := range c.List(ctx, "example.keys") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("stream", name)
	}
	// Output:
	// a
	// b
	// c
	// stream example.keys
}

// ExampleClient_Watch follows every stream of a namespace.
func ExampleClient_Watch() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	c := client.New(nc)
	w, err := c.Watch(ctx, "watched.>")
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	c.Stream("watched.a").Set(ctx, []byte("one"))
	c.Stream("watched.b.c").Set(ctx, []byte("two"))
	c.Stream("watched.a").DeleteSeq(ctx, 1)
	n := 0
	for ev, err := range w.Events(ctx) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Stream, ev.Revision, ev.Op, ev.Gap != nil)
		if n++; n == 3 {
			break
		}
	}
	// Output:
	// watched.a 1 set false
	// watched.b.c 1 set false
	// watched.a 2 delete false
}

// ExampleStream_Mirror keeps a live copy of a stream in memory.
func ExampleStream_Mirror() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	st := client.New(nc).Stream("example.mirror")
	st.Set(ctx, []byte("red"), client.WithKey("color"))

	changed := make(chan client.Update, 16)
	m, err := st.Mirror(ctx, client.WithOnUpdate(func(u client.Update) { changed <- u }))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	if err := m.Wait(ctx); err != nil {
		log.Fatal(err)
	}
	<-changed // the first read
	msg, _ := m.GetKey("color")
	fmt.Println(m.Len(), m.Revision(), string(msg.Data))

	st.Set(ctx, []byte("blue"), client.WithKey("color"))
	u := <-changed
	fmt.Println(u.Op, string(u.Msg.Data), "replaced", string(u.Replaced.Data), "at revision", u.Revision)
	fmt.Println(m.Keys(), m.Len())
	// Output:
	// 1 1 red
	// set blue replaced red at revision 2
	// [color] 1
}

// ExampleKV_Watch uses a stream as a key-value store and watches it.
func ExampleKV_Watch() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	kv := client.New(nc).KV("example.kv")
	seq, _ := kv.Create(ctx, "owner", []byte("ada"))
	w, err := kv.Watch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			break // the current values are all there
		}
		fmt.Println(e.Op, e.Key, string(e.Value))
	}
	if _, err := kv.Update(ctx, "owner", []byte("grace"), seq); err != nil {
		log.Fatal(err)
	}
	if _, err := kv.Update(ctx, "owner", []byte("linus"), seq); errors.Is(err, client.ErrWrongLastSequence) {
		fmt.Println("stale update refused")
	}
	kv.Delete(ctx, "owner")
	for range 2 {
		e := <-w.Updates()
		fmt.Println(e.Op, e.Key, string(e.Value))
	}
	// Output:
	// put owner ada
	// stale update refused
	// put owner grace
	// delete owner
}

// ExampleStream_Changes brings a copy taken at a revision up to date
// without reading the stream again.
func ExampleStream_Changes() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	st := client.New(nc).Stream("example.changes")
	st.Set(ctx, []byte("a"), client.WithKey("x"))
	inv, _ := st.Inventory(ctx) // a copy would be exact at this revision
	st.Set(ctx, []byte("b"), client.WithKey("x"))
	st.DeleteKey(ctx, "x")

	ch := st.Changes(ctx, inv.Revision)
	for ev, err := range ch.All() {
		if errors.Is(err, client.ErrRevisionGone) {
			fmt.Println("too old: read the stream again")
			return
		} else if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ev.Revision, ev.Op, ev.Ranges, ev.Keys)
	}
	fmt.Println("now exact at revision", ch.Revision())
	// Output:
	// 3 delete [[2 2]] [x]
	// now exact at revision 3
}
