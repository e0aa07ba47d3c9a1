package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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
		if err := checkStream(stream); err != nil {
			return err
		}
		q, err := c.query(r)
		if err != nil {
			return err
		}
		cl, nc, err := c.connect()
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
		return c.follow(ctx, nc, st, q)
	}
}

// follow prints the range q of st and then its events, by the live
// mirror recipe: subscribe first, read the pages noting the first page's
// revision, then print the events above it. It ends when ctx does.
func (c *cli) follow(ctx context.Context, nc *nats.Conn, st *client.Stream, q client.Query) error {
	what := "getall " + st.Name()
	w, err := st.Watch(ctx)
	if err != nil {
		return c.fail(what, err)
	}
	defer w.Stop()
	p := c.printer()
	var rev, lastSeq uint64
	for first := true; ; first = false {
		page, err := st.GetAllPage(ctx, q)
		if err != nil {
			return c.fail(what, err)
		}
		if first {
			rev = page.Revision
		}
		for _, m := range page.Msgs {
			if err := p.msg(st.Name(), m); err != nil {
				return err
			}
			lastSeq = m.Seq
		}
		if page.NumPending == 0 {
			break
		}
		if page.NextSeq <= q.StartSeq {
			return c.fail(what, fmt.Errorf("next seq %d does not continue from %d", page.NextSeq, q.StartSeq))
		}
		q.StartSeq = page.NextSeq
	}
	// A message printed from a later page may come again as an event.
	skip := func(ev client.Event) bool {
		if ev.Op == subjects.OpDestroy {
			lastSeq = 0 // a new stream of this name starts again at seq 1
		}
		return ev.Op == subjects.OpSet && ev.Msg.Seq <= lastSeq
	}
	return c.events(ctx, nc, st.Name(), rev, q.EndSeq, w, skip)
}

// events prints the events of w above revision rev until ctx ends. A
// gap in revisions is caught up with changes; endSeq, when set, leaves
// out set events beyond it.
func (c *cli) events(ctx context.Context, nc *nats.Conn, stream string, rev, endSeq uint64, w *client.Watcher, skip func(client.Event) bool) error {
	p := c.printer()
	for {
		ev, err := w.Next(ctx)
		if ctx.Err() != nil {
			return nil // interrupted: the normal end of following
		}
		if errors.Is(err, client.ErrBadEvent) {
			fmt.Fprintf(c.stderr, "persist: getall %s: skipped an event: %v\n", stream, err)
			continue
		}
		if err != nil && !errors.Is(err, nats.ErrSlowConsumer) {
			return c.fail("getall "+stream, err)
		}
		if err != nil || ev.Revision > rev+1 {
			// Missed events: print what changed since the last one seen.
			if rev, err = c.catchUp(ctx, nc, stream, rev); err != nil {
				return err
			}
			continue
		}
		if ev.Revision <= rev && ev.Op != subjects.OpDestroy {
			continue
		}
		rev = ev.Revision
		if ev.Op == subjects.OpDestroy {
			rev = 0 // a new stream of this name starts again at revision 0
		}
		if skip(ev) || (endSeq != 0 && ev.Op == subjects.OpSet && ev.Msg.Seq > endSeq) {
			continue
		}
		if err := p.event(stream, ev, nil); err != nil {
			return err
		}
	}
}

// catchUp prints the changes of stream after rev and returns the
// revision they reach.
func (c *cli) catchUp(ctx context.Context, nc *nats.Conn, stream string, rev uint64) (uint64, error) {
	fmt.Fprintf(c.stderr, "persist: %s: missed events after revision %d; catching up with changes\n", stream, rev)
	return c.printChanges(ctx, nc, stream, rev, false)
}

// printChanges prints every change of stream after rev, page by page, and
// returns the revision reached. With end, a JSON end object (or a line)
// follows.
func (c *cli) printChanges(ctx context.Context, nc *nats.Conn, stream string, rev uint64, end bool) (uint64, error) {
	p := c.printer()
	for {
		page, err := changesPage(ctx, nc, c.conn.prefix, stream, rev, c.conn.timeout)
		if err != nil {
			return rev, c.fail("changes "+stream, err)
		}
		for _, ch := range page.changes {
			if err := p.event(stream, ch.Event, ch.keys); err != nil {
				return rev, err
			}
			rev = ch.Revision
		}
		if page.pending == 0 {
			rev = max(rev, page.revision)
			break
		}
		if len(page.changes) == 0 {
			return rev, c.fail("changes "+stream, errors.New("the worker reports changes pending but sent none"))
		}
	}
	if end {
		if p.json {
			return rev, p.value(map[string]any{"stream": stream, "end": true, "revision": rev})
		}
		fmt.Fprintf(c.stdout, "(%s at revision %d)\n", stream, rev)
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
		if err := checkStream(stream); err != nil {
			return err
		}
		_, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		_, err = c.printChanges(ctx, nc, stream, after, true)
		return err
	}
}

func (c *cli) declareWatch(app *kingpin.Application) {
	var pattern string
	cmd := app.Command("watch", "Print the events of the streams matching PATTERN (acme.docs, acme.*, acme.>) until interrupted.")
	cmd.Arg("pattern", "A stream name, with * for one token or a final > for the rest.").Required().StringVar(&pattern)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		if err := checkPattern(pattern); err != nil {
			return err
		}
		_, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		return c.watch(ctx, nc, pattern)
	}
}

// checkPattern accepts stream names with * tokens and a final >.
func checkPattern(pattern string) error {
	toks := strings.Split(pattern, ".")
	for i, t := range toks {
		if t == "*" || (t == ">" && i == len(toks)-1) {
			continue
		}
		if err := subjects.ValidateToken(t); err != nil {
			return command.Usagef("pattern %q: token %q: %v", pattern, t, err)
		}
	}
	if len(toks) > 16 {
		return command.Usagef("pattern %q: more than 16 tokens", pattern)
	}
	return nil
}

// watch prints events of every stream matching pattern, warning on a gap
// in a stream's revisions.
func (c *cli) watch(ctx context.Context, nc *nats.Conn, pattern string) error {
	sub, err := nc.SubscribeSync(c.conn.prefix + ".ev." + pattern)
	if err != nil {
		return fmt.Errorf("watch %s: %w", pattern, err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("watch %s: %w", pattern, err)
	}
	p := c.printer()
	last := map[string]uint64{}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, nats.ErrSlowConsumer) {
			fmt.Fprintf(c.stderr, "persist: watch %s: too slow, events were dropped\n", pattern)
			continue
		}
		if err != nil {
			return fmt.Errorf("watch %s: %w", pattern, err)
		}
		stream, err := subjects.ParseEvent(c.conn.prefix, m.Subject)
		if err != nil {
			continue
		}
		ev, err := client.DecodeEvent(m)
		if err != nil {
			fmt.Fprintf(c.stderr, "persist: watch %s: %s: skipped an event: %v\n", pattern, stream, err)
			continue
		}
		if prev, ok := last[stream]; ok && ev.Revision != prev+1 && ev.Revision > prev {
			fmt.Fprintf(c.stderr, "persist: watch %s: %s: missed events %d to %d\n", pattern, stream, prev+1, ev.Revision-1)
		}
		last[stream] = ev.Revision
		if ev.Op == subjects.OpDestroy {
			last[stream] = 0
		}
		if err := p.event(stream, ev, nil); err != nil {
			return err
		}
	}
}

// change is one entry of a changes answer: an event, and for a delete
// the keys of the keyed messages it removed.
type change struct {
	client.Event
	keys []string
}

// changesAnswer is one page of a changes answer.
type changesAnswer struct {
	changes  []change
	revision uint64
	pending  int64
}

// changesPage reads one page of the changes of stream after rev. It
// speaks the wire itself until the client has Changes.
func changesPage(ctx context.Context, nc *nats.Conn, prefix, stream string, rev uint64, timeout time.Duration) (changesAnswer, error) {
	var a changesAnswer
	body, err := json.Marshal(subjects.ChangesRequest{AfterRevision: rev})
	if err != nil {
		return a, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return a, err
	}
	defer sub.Unsubscribe()
	subj := subjects.APISubject(prefix, subjects.OpChanges, stream)
	if err := nc.PublishMsg(&nats.Msg{Subject: subj, Reply: inbox, Data: body}); err != nil {
		return a, err
	}
	for {
		if len(a.changes) > subjects.MaxPageMsgs {
			return a, fmt.Errorf("more than %d changes without a terminator", subjects.MaxPageMsgs)
		}
		m, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) {
			return a, client.ErrNoWorker
		}
		if err != nil {
			return a, err
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return a, client.ErrNoWorker
		}
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			var reply subjects.ErrorReply
			if json.Unmarshal(m.Data, &reply) == nil && reply.Error != nil {
				return a, reply.Error
			}
			return a, fmt.Errorf("error %s: %s", code, m.Header.Get("Nats-Service-Error"))
		}
		if m.Header.Get(subjects.HeaderEnd) == "true" {
			if a.revision, err = strconv.ParseUint(m.Header.Get(subjects.HeaderRevision), 10, 64); err != nil {
				return a, fmt.Errorf("terminator: %s: %w", subjects.HeaderRevision, err)
			}
			if a.pending, err = strconv.ParseInt(m.Header.Get(subjects.HeaderNumPending), 10, 64); err != nil || a.pending < 0 {
				return a, fmt.Errorf("terminator: bad %s %q", subjects.HeaderNumPending, m.Header.Get(subjects.HeaderNumPending))
			}
			return a, nil
		}
		ev, err := client.DecodeEvent(m)
		if err != nil {
			return a, err
		}
		ch := change{Event: ev}
		if ev.Op == subjects.OpDelete {
			var keys subjects.DeleteEvent
			_ = json.Unmarshal(m.Data, &keys) // DecodeEvent checked the body
			ch.keys = keys.Keys
		}
		a.changes = append(a.changes, ch)
	}
}
