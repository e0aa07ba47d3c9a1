package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/subjects"
)

// Example writes a keyed message, reads it back and pages through the
// stream. It needs a NATS server with a persist worker, so it has no
// output to check.
func Example() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	docs := client.New(nc).Stream("acme.docs")

	ack, err := docs.Set(ctx, []byte("hello"), client.WithKey("greeting"), client.WithPreviousSeq(0))
	if errors.Is(err, subjects.ErrWrongLastSequence) {
		fmt.Println("someone else wrote the greeting first")
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println("written at seq", ack.Seq)

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
}
