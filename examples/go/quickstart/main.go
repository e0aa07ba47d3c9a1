// Command quickstart shows the Go client of Persist: it writes to a
// stream, reads it back, and keeps a live mirror of it. It connects to
// $NATS_URL, or nats://127.0.0.1:4222, where a persist worker must run:
//
//	go build -o persist-worker ./cmd/persist-worker
//	./persist-worker --data ./persist-data &
//	go run ./examples/go/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	nc, err := nats.Connect(os.Getenv("NATS_URL")) // "" is nats://127.0.0.1:4222
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c := client.New(nc)
	// Any strings become a valid stream name, one token each.
	st := c.Stream(client.StreamName("quickstart", fmt.Sprint(time.Now().UnixNano())))
	defer st.Destroy(ctx)

	// A write is retried safely: it carries a msg id of its own.
	ack, err := st.Set(ctx, []byte("hello"), client.WithKey("greeting"))
	if err != nil {
		return err
	}
	fmt.Println("set greeting at seq", ack.Seq)
	if _, err := st.Set(ctx, []byte("world")); err != nil {
		return err
	}

	m, err := st.GetKey(ctx, "greeting")
	if err != nil {
		return err
	}
	fmt.Printf("get greeting: %s\n", m.Data)

	// Create fails when the key exists: a typed error tells why.
	_, err = st.Set(ctx, []byte("again"), client.WithKey("greeting"), client.WithPreviousSeq(0))
	fmt.Println("create greeting again:", errors.Is(err, client.ErrWrongLastSequence))

	for m, err := range st.GetAll(ctx, client.Query{}) {
		if err != nil {
			return err
		}
		fmt.Printf("getall: %d %q\n", m.Seq, m.Data)
	}

	// A mirror is a live copy: it reads the stream, then follows it.
	updates := make(chan client.Update, 16)
	mirror, err := st.Mirror(ctx, client.WithOnUpdate(func(u client.Update) { updates <- u }))
	if err != nil {
		return err
	}
	defer mirror.Close()
	if err := mirror.Wait(ctx); err != nil {
		return err
	}
	fmt.Println("mirror ready:", mirror.Len(), "messages at revision", mirror.Revision())
	for range mirror.Len() {
		<-updates // the first read
	}
	if _, err := st.Set(ctx, []byte("hello again"), client.WithKey("greeting")); err != nil {
		return err
	}
	u := <-updates
	fmt.Printf("mirror %s: %s = %q\n", u.Op, u.Msg.Key, u.Msg.Data)
	m, _ = mirror.GetKey("greeting")
	fmt.Printf("mirror greeting: %s (%d messages)\n", m.Data, mirror.Len())
	return nil
}
