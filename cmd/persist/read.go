package main

import (
	"context"
	"fmt"

	"github.com/alecthomas/kingpin/v2"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

func (c *cli) declareGet(app *kingpin.Application) {
	var (
		stream, key string
		seq         uint64
		seqSet, raw bool
	)
	cmd := app.Command("get", "Print one message: --seq N or --key K.")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	cmd.Flag("seq", "The message with this seq.").PlaceHolder("SEQ").IsSetByUser(&seqSet).Uint64Var(&seq)
	cmd.Flag("key", "The message with this key.").Short('k').PlaceHolder("KEY").StringVar(&key)
	cmd.Flag("raw", "Print the payload alone, byte for byte.").BoolVar(&raw)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		if err := checkStream(stream); err != nil {
			return err
		}
		if seqSet == (key != "") {
			return command.Usagef("get %s: give exactly one of --seq or --key", stream)
		}
		cl, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		var m *client.Msg
		if seqSet {
			m, err = cl.Stream(stream).Get(ctx, seq)
		} else {
			m, err = cl.Stream(stream).GetKey(ctx, key)
		}
		if err != nil {
			return c.fail("get "+stream, err)
		}
		if raw {
			_, err := c.stdout.Write(m.Data)
			return err
		}
		return c.printer().msg(stream, m)
	}
}

func (c *cli) declareInfo(app *kingpin.Application) {
	var stream string
	cmd := app.Command("info", "Show a stream's counts, seqs, revision and configuration.")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		cl, nc, err := c.connectFor(stream)
		if err != nil {
			return err
		}
		defer nc.Close()
		st := cl.Stream(stream)
		inv, err := st.Inventory(ctx)
		if err != nil {
			return c.fail("info "+stream, err)
		}
		cfg, err := st.Config(ctx)
		if err != nil {
			return c.fail("info "+stream, err)
		}
		if c.json {
			return c.printer().value(struct {
				Stream string `json:"stream"`
				client.Inventory
				Config client.Config `json:"config"`
			}{stream, inv, cfg})
		}
		fmt.Fprintf(c.stdout, "Stream %s\n\n", stream)
		first := "none (empty)"
		if inv.FirstSeq != 0 {
			first = fmt.Sprint(inv.FirstSeq)
		}
		fmt.Fprintf(c.stdout, "  %-22s %d\n  %-22s %s\n  %-22s %s\n  %-22s %d\n  %-22s %d\n\nConfiguration:\n",
			"messages:", inv.Count, "bytes:", formatSize(inv.Bytes), "first_seq:", first,
			"last_seq:", inv.LastSeq, "revision:", inv.Revision)
		writeConfig(c.stdout, cfg)
		return nil
	}
}

func (c *cli) declareLocate(app *kingpin.Application) {
	var stream string
	cmd := app.Command("locate", "Show which worker serves a stream (or would: the stream need not exist, and is not created) and, with partitioned workers, its partition.")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		cl, nc, err := c.connectFor(stream)
		if err != nil {
			return err
		}
		defer nc.Close()
		loc, err := cl.Locate(ctx, stream)
		if err != nil {
			return c.fail("locate "+stream, err)
		}
		if c.json {
			return c.printer().value(loc)
		}
		part := "none (one worker serves every stream)"
		if loc.Partition != nil {
			part = fmt.Sprintf("%d of %d", *loc.Partition, loc.PartitionCount)
		}
		_, err = fmt.Fprintf(c.stdout, "Stream %s\n\n  %-11s %s\n  %-11s %s\n  %-11s %s\n\nnats micro info %s %s\n",
			stream, "worker:", loc.Worker, "service:", loc.Name, "partition:", part, loc.Name, loc.Worker)
		return err
	}
}

func (c *cli) declareWorkers(app *kingpin.Application) {
	name := client.DefaultServiceName
	cmd := app.Command("workers", "List the running workers of the prefix, one a line: id, version, the partitions each serves now. Needs permission to publish on $SRV.STATS.<name> and receive the replies, which a worker's user has.")
	cmd.Flag("name", "The workers' micro service name (their --name).").Default(name).StringVar(&name)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		cl, nc, err := c.connect(client.WithServiceName(name))
		if err != nil {
			return err
		}
		defer nc.Close()
		ws, err := cl.Workers(ctx)
		if err != nil {
			return c.fail("workers", err)
		}
		if len(ws) == 0 {
			return &failure{fmt.Sprintf("workers: no worker of service %q on prefix %q answered $SRV.STATS.%s", name, c.conn.prefix, name), client.ErrNoWorker}
		}
		p := c.printer()
		for _, w := range ws {
			if c.json {
				err = p.value(w)
			} else {
				_, err = fmt.Fprintf(c.stdout, "%s  %s  %s\n", w.ID, w.Version, served(w))
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// served describes the partitions w serves: "0-3,7 of 8", "none of 8",
// with " (leases)" when it claims them through leases, or "every stream"
// when it is not partitioned.
func served(w client.Worker) string {
	if w.PartitionCount == 0 {
		return "every stream (not partitioned)"
	}
	parts := subjects.FormatPartitions(w.Partitions)
	if parts == "" {
		parts = "none"
	}
	s := fmt.Sprintf("partitions %s of %d", parts, w.PartitionCount)
	if w.Leases {
		s += " (leases)"
	}
	return s
}

func (c *cli) declareKeys(app *kingpin.Application) {
	var stream, after string
	cmd := app.Command("keys", "Print a stream's keys in byte order, one a line.")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	cmd.Flag("after", "Start after this key.").PlaceHolder("KEY").StringVar(&after)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		cl, nc, err := c.connectFor(stream)
		if err != nil {
			return err
		}
		defer nc.Close()
		return c.pages("keys "+stream, after, "key", func(after string) ([]string, bool, error) {
			return cl.Stream(stream).KeysPage(ctx, after, 0)
		})
	}
}

func (c *cli) declareList(app *kingpin.Application) {
	var prefix, after string
	cmd := app.Command("ls", "Print the streams under PREFIX (whole tokens: acme lists acme and acme.x).")
	cmd.Arg("prefix", "A namespace or a longer prefix of stream names.").Required().StringVar(&prefix)
	cmd.Flag("after", "Start after this stream.").PlaceHolder("STREAM").StringVar(&after)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		if err := subjects.ValidateName(prefix); err != nil {
			return command.Usagef("prefix %q: %v", prefix, err)
		}
		cl, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		return c.pages("ls "+prefix, after, "stream", func(after string) ([]string, bool, error) {
			return cl.ListPage(ctx, prefix, after, 0)
		})
	}
}

// pages prints every name of a paged listing, one a line, or as JSON
// objects {field: name}.
func (c *cli) pages(what, after, field string, page func(after string) ([]string, bool, error)) error {
	p := c.printer()
	for {
		names, more, err := page(after)
		if err != nil {
			return c.fail(what, err)
		}
		for _, n := range names {
			if p.json {
				err = p.value(map[string]string{field: n})
			} else {
				_, err = fmt.Fprintln(c.stdout, n)
			}
			if err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		if len(names) == 0 || names[len(names)-1] <= after {
			return c.fail(what, fmt.Errorf("the worker's listing does not move on after %q", after))
		}
		after = names[len(names)-1]
	}
}
