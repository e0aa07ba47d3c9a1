package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/alecthomas/kingpin/v2"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

// rangeFlags select a range of messages (getall, export).
type rangeFlags struct {
	start, end uint64
	since      string
}

func (r *rangeFlags) declare(cmd *kingpin.CmdClause) {
	cmd.Flag("start", "First seq.").PlaceHolder("SEQ").Uint64Var(&r.start)
	cmd.Flag("end", "Last seq (inclusive).").PlaceHolder("SEQ").Uint64Var(&r.end)
	cmd.Flag("since", "Messages written since: a duration back from now (1h) or an RFC 3339 time.").PlaceHolder("WHEN").StringVar(&r.since)
}

// query is the getall query of the flags.
func (c *cli) query(r rangeFlags) (client.Query, error) {
	q := client.Query{StartSeq: r.start, EndSeq: r.end}
	if r.end != 0 && r.start > r.end {
		return q, command.Usagef("--start %d is after --end %d", r.start, r.end)
	}
	if r.since != "" {
		t, err := parseSince(r.since, c.now())
		if err != nil {
			return q, command.Usagef("--since %q: %v", r.since, err)
		}
		q.StartTime = t
	}
	return q, nil
}

func (c *cli) declareGetAll(app *kingpin.Application) {
	var (
		stream string
		r      rangeFlags
		follow bool
	)
	cmd := app.Command("getall", "Print a range of messages; with --follow, then every change as it happens (like tail -f).")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	r.declare(cmd)
	cmd.Flag("follow", "After the range, print the stream's events until interrupted.").Short('f').BoolVar(&follow)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		q, err := c.query(r)
		if err != nil {
			return err
		}
		cl, nc, err := c.connectFor(stream)
		if err != nil {
			return err
		}
		defer nc.Close()
		st := cl.Stream(stream)
		p := c.printer()
		if !follow {
			for m, err := range st.GetAll(ctx, q) {
				if err != nil {
					return c.fail("getall "+stream, err)
				}
				if err := p.msg(stream, m); err != nil {
					return err
				}
			}
			return nil
		}
		return c.follow(ctx, st, q)
	}
}

// follow prints the range q of st and then its events, by the live
// mirror recipe: subscribe first, read the pages noting the first page's
// revision, then print the events above it. A gap in the events is
// caught up with changes; when those are gone, the range is read again.
// It ends when ctx does.
func (c *cli) follow(ctx context.Context, st *client.Stream, q client.Query) error {
	what := "getall " + st.Name()
	w, err := st.Watch(ctx)
	if err != nil {
		return c.fail(what, err)
	}
	defer w.Stop()
	p := c.printer()
	rev, lastSeq, err := c.printRange(ctx, st, q)
	if err != nil {
		return err
	}
	for {
		ev, err := w.Next(ctx)
		switch {
		case ctx.Err() != nil:
			return nil // interrupted: the normal end of following
		case errors.Is(err, client.ErrBadEvent):
			fmt.Fprintf(c.stderr, "persist: %s: skipped an event: %v\n", what, err)
			continue
		case errors.Is(err, nats.ErrSlowConsumer):
			continue // the next event of the stream carries the gap
		case err != nil:
			return c.fail(what, err)
		}
		// A stream destroyed and created again unseen starts over at a
		// revision at most the last one seen.
		recreated := ev.Gap != nil && ev.Revision <= ev.Gap.After
		if ev.Revision <= rev && !recreated {
			continue // already in what was printed
		}
		if recreated || ev.Revision > rev+1 {
			fmt.Fprintf(c.stderr, "persist: %s: missed events after revision %d; catching up\n", what, rev)
			if rev, err = c.printChanges(ctx, st, rev, false); errors.Is(err, client.ErrRevisionGone) {
				fmt.Fprintf(c.stderr, "persist: %s: those changes are no longer kept; reading the stream again\n", what)
				rev, lastSeq, err = c.printRange(ctx, st, q)
			}
			if err != nil {
				return c.fail(what, err)
			}
			continue
		}
		rev = ev.Revision
		if ev.Op == subjects.OpDestroy {
			rev, lastSeq = 0, 0 // a new stream of this name starts again at 1
		}
		if ev.Op == subjects.OpSet && (ev.Msg.Seq <= lastSeq || (q.EndSeq != 0 && ev.Msg.Seq > q.EndSeq)) {
			continue // printed from a later page already, or out of range
		}
		if err := p.event(ev); err != nil {
			return err
		}
	}
}

// printRange prints the range q page by page and returns the first
// page's revision and the last seq printed.
func (c *cli) printRange(ctx context.Context, st *client.Stream, q client.Query) (rev, lastSeq uint64, err error) {
	p := c.printer()
	for first := true; ; first = false {
		page, err := st.GetAllPage(ctx, q)
		if err != nil {
			return 0, 0, c.fail("getall "+st.Name(), err)
		}
		if first {
			rev = page.Revision
		}
		for _, m := range page.Msgs {
			if err := p.msg(st.Name(), m); err != nil {
				return 0, 0, err
			}
			lastSeq = m.Seq
		}
		if page.NumPending == 0 {
			return rev, lastSeq, nil
		}
		if page.NextSeq <= q.StartSeq {
			return 0, 0, c.fail("getall "+st.Name(), fmt.Errorf("next seq %d does not continue from %d", page.NextSeq, q.StartSeq))
		}
		q.StartSeq = page.NextSeq
	}
}

// printChanges prints every change of st after rev and returns the
// revision reached. With end, a JSON end object (or a line) follows.
func (c *cli) printChanges(ctx context.Context, st *client.Stream, rev uint64, end bool) (uint64, error) {
	p := c.printer()
	ch := st.Changes(ctx, rev)
	for ev, err := range ch.All() {
		if err != nil {
			return rev, err
		}
		if err := p.event(ev); err != nil {
			return rev, err
		}
		rev = ev.Revision
	}
	rev = max(rev, ch.Revision())
	if end {
		if p.json {
			return rev, p.value(map[string]any{"stream": st.Name(), "end": true, "revision": rev})
		}
		fmt.Fprintf(c.stdout, "(%s at revision %d)\n", st.Name(), rev)
	}
	return rev, nil
}

func (c *cli) declareChanges(app *kingpin.Application) {
	var (
		stream string
		after  uint64
	)
	cmd := app.Command("changes", "Print what changed in a stream after a revision, then the revision reached.")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	cmd.Flag("after", "The revision to start after (0: everything still kept).").PlaceHolder("REVISION").Uint64Var(&after)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		cl, nc, err := c.connectFor(stream)
		if err != nil {
			return err
		}
		defer nc.Close()
		_, err = c.printChanges(ctx, cl.Stream(stream), after, true)
		err = c.fail("changes "+stream, err)
		if errors.Is(err, client.ErrRevisionGone) {
			err = &failure{err.Error() + "; read the stream again with getall", err}
		}
		return err
	}
}

func (c *cli) declareWatch(app *kingpin.Application) {
	var pattern string
	cmd := app.Command("watch", "Print the events of the streams matching PATTERN (acme.docs, acme.*, acme.>) until interrupted.")
	cmd.Arg("pattern", "A stream name, with * for one token or a final > for the rest.").Required().StringVar(&pattern)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		what := "watch " + pattern
		cl, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		w, err := cl.Watch(ctx, pattern)
		if errors.Is(err, subjects.ErrInvalidName) {
			return command.Usagef("%s: %s", what, strings.TrimPrefix(err.Error(), "client: "))
		}
		if err != nil {
			return c.fail(what, err)
		}
		defer w.Stop()
		p := c.printer()
		for {
			ev, err := w.Next(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, nats.ErrSlowConsumer):
				fmt.Fprintf(c.stderr, "persist: %s: too slow, events were dropped\n", what)
				continue
			case errors.Is(err, client.ErrBadEvent):
				fmt.Fprintf(c.stderr, "persist: %s: skipped an event: %v\n", what, err)
				continue
			case err != nil:
				return c.fail(what, err)
			}
			if g := ev.Gap; g != nil && ev.Revision > g.After+1 {
				fmt.Fprintf(c.stderr, "persist: %s: %s: missed events %d to %d\n", what, ev.Stream, g.After+1, ev.Revision-1)
			}
			if err := p.event(ev); err != nil {
				return err
			}
		}
	}
}
