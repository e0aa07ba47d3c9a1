package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

// progressFlag is --progress/--no-progress: unset means "on a terminal".
type progressFlag struct {
	on, set bool
}

func (p *progressFlag) declare(cmd *kingpin.CmdClause) {
	cmd.Flag("progress", "Show a progress bar on standard error (default: when it is a terminal).").IsSetByUser(&p.set).BoolVar(&p.on)
}

func (c *cli) wantProgress(p progressFlag) bool {
	if p.set {
		return p.on
	}
	return c.isTerminal(c.stderr)
}

func (c *cli) declareExport(app *kingpin.Application) {
	var (
		stream string
		r      rangeFlags
		prog   progressFlag
	)
	cmd := app.Command("export", "Write a stream's messages to standard output, one JSON object a line (import reads them).")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	r.declare(cmd)
	prog.declare(cmd)
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
		var bar *progress
		if c.wantProgress(prog) {
			inv, err := st.Inventory(ctx)
			if err != nil {
				return c.fail("export "+stream, err)
			}
			bar = c.newProgress("export "+stream, inv.Count, "messages")
		}
		out := bufio.NewWriter(c.stdout)
		enc := json.NewEncoder(out)
		var n int64
		for m, err := range st.GetAll(ctx, q) {
			if err != nil {
				bar.stop()
				return c.fail("export "+stream, err)
			}
			if err := enc.Encode(toJSON(stream, m)); err != nil {
				bar.stop()
				return fmt.Errorf("export %s: %w", stream, err)
			}
			n++
			bar.set(n)
		}
		bar.stop()
		if err := out.Flush(); err != nil {
			return fmt.Errorf("export %s: %w", stream, err)
		}
		return nil
	}
}

// importID is the msg id of an imported message: derived from where it
// came from (stream, seq and time, so a later incarnation of the stream
// gets other ids), so running the same import again writes nothing twice
// within the target's duplicate window.
func importID(m msgJSON) string {
	return "import:" + m.Stream + ":" + strconv.FormatUint(m.Seq, 10) + ":" + strconv.FormatInt(m.Time, 10)
}

// importStats counts what an import did.
type importStats struct {
	Stored     int64 `json:"stored"`
	Duplicates int64 `json:"duplicates"` // already there from an earlier run
	Expired    int64 `json:"expired"`    // skipped: their TTL had run out
}

func (c *cli) declareImport(app *kingpin.Application) {
	var (
		stream, file string
		batch        int
		prog         progressFlag
	)
	cmd := app.Command("import", "Append the messages of an export (standard input, or FILE) to a stream. Each message gets a msg id made from its origin, so running the import again within the stream's duplicate window (2m unless config --duplicate-window says more) stores nothing twice.")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	cmd.Arg("file", "The export to read; - or none is standard input.").StringVar(&file)
	cmd.Flag("batch", "Messages per setmany request (at most 1000).").Default("500").IntVar(&batch)
	prog.declare(cmd)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		if err := checkStream(stream); err != nil {
			return err
		}
		if batch < 1 || batch > subjects.MaxSetMany {
			return command.Usagef("--batch %d: want 1 to %d", batch, subjects.MaxSetMany)
		}
		in, size := c.stdin, int64(0)
		if file != "" && file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return command.Usagef("import %s: %v", stream, err)
			}
			defer f.Close()
			in = f
		}
		if f, ok := in.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
				size = st.Size()
			}
		}
		cl, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		var bar *progress
		if c.wantProgress(prog) {
			bar = c.newProgress("import "+stream, size, "bytes")
		}
		im := &importer{
			c: c, st: cl.Stream(stream), batch: batch, bar: bar,
			// A setmany body is JSON with payloads in base64: keep it well
			// inside what the server takes in one message.
			maxBody: nc.MaxPayload() / 2,
		}
		err = im.run(ctx, in)
		bar.stop()
		if err != nil {
			return fmt.Errorf("%w; %d stored, %s", err, im.stats.Stored, im.resumeHint())
		}
		if c.json {
			return c.printer().value(im.stats)
		}
		fmt.Fprintf(c.stdout, "imported %d %s into %s", im.stats.Stored, plural(im.stats.Stored, "message"), stream)
		if im.stats.Duplicates > 0 {
			fmt.Fprintf(c.stdout, ", %d already there", im.stats.Duplicates)
		}
		if im.stats.Expired > 0 {
			fmt.Fprintf(c.stdout, ", %d expired and skipped", im.stats.Expired)
		}
		fmt.Fprintln(c.stdout)
		return nil
	}
}

// importer writes the lines of an export to a stream in setmany batches.
type importer struct {
	c       *cli
	st      *client.Stream
	batch   int
	maxBody int64
	bar     *progress
	stats   importStats

	items     []client.Item
	lines     []int // the line of each item, for errors
	bodyBytes int64 // estimated size of the batch's request body
}

// run reads every line of in. A line that does not decode stops the
// import after what came before it is stored.
func (im *importer) run(ctx context.Context, in io.Reader) error {
	what := "import " + im.st.Name()
	r := bufio.NewReaderSize(in, 1<<16)
	var read int64
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		read += int64(len(b))
		if len(bytes.TrimSpace(b)) > 0 {
			it, ok, derr := im.item(b)
			if derr != nil {
				if ferr := im.flush(ctx); ferr != nil {
					return ferr
				}
				return im.c.fail(what, fmt.Errorf("line %d: %w", line, derr))
			}
			if ok {
				if err := im.add(ctx, it, line); err != nil {
					return err
				}
			} else {
				im.stats.Expired++
			}
		}
		im.bar.set(read)
		if errors.Is(err, io.EOF) {
			return im.flush(ctx)
		}
		if err != nil {
			if ferr := im.flush(ctx); ferr != nil {
				return ferr
			}
			return im.c.fail(what, err)
		}
	}
}

// item decodes one line; ok is false for a message whose TTL has run out.
func (im *importer) item(line []byte) (it client.Item, ok bool, err error) {
	var m msgJSON
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return it, false, fmt.Errorf("not a message of an export: %w", err)
	}
	if m.Stream == "" || m.Seq == 0 {
		return it, false, errors.New(`a message needs "stream" and "seq" (its origin, which makes the import repeatable)`)
	}
	if err := subjects.ValidateName(m.Stream); err != nil {
		return it, false, fmt.Errorf("stream %q: %w", m.Stream, err)
	}
	it = client.Item{Data: m.Data, Key: m.Key, Header: m.Headers, MsgID: importID(m)}
	if m.Expires != 0 {
		// The export holds when the message expires; what is left of its
		// life becomes its TTL here.
		left := m.Expires - im.c.now().UnixMilli()
		if left <= 0 {
			return it, false, nil
		}
		it.TTL = time.Duration(left) * time.Millisecond
	}
	return it, true, nil
}

// resumeHint says how to go on after a failed import: run it again
// within the target's duplicate window, read with a fresh deadline since
// the import's context may be the one that ended.
func (im *importer) resumeHint() string {
	ctx, cancel := context.WithTimeout(context.Background(), im.c.conn.timeout)
	defer cancel()
	cfg, err := im.st.Config(ctx)
	if err != nil {
		return "run the same import again to go on"
	}
	return fmt.Sprintf("run the same import again within %s (the stream's duplicate window) to go on", formatMillis(cfg.DuplicateWindow))
}

// itemSize estimates the encoded size of an item in a setmany body.
func itemSize(it client.Item) int64 {
	n := int64(len(it.Data))*4/3 + int64(len(it.Key)+len(it.MsgID)) + 96
	for k, vs := range it.Header {
		for _, v := range vs {
			n += int64(len(k)+len(v)) + 8
		}
	}
	return n
}

// add queues an item, sending the batch when it is full.
func (im *importer) add(ctx context.Context, it client.Item, line int) error {
	size := itemSize(it)
	if len(im.items) > 0 && im.bodyBytes+size > im.maxBody {
		if err := im.flush(ctx); err != nil {
			return err
		}
	}
	im.items = append(im.items, it)
	im.lines = append(im.lines, line)
	im.bodyBytes += size
	if len(im.items) >= im.batch {
		return im.flush(ctx)
	}
	return nil
}

// flush sends the queued items. One that the worker refuses stops the
// import; the items after it in the batch were applied, and a rerun
// finds them as duplicates.
func (im *importer) flush(ctx context.Context) error {
	if len(im.items) == 0 {
		return nil
	}
	what := "import " + im.st.Name()
	var results []client.Result
	var err error
	if len(im.items) == 1 && im.bodyBytes > im.maxBody {
		// Too large for a setmany body: a plain set carries it raw.
		results, err = im.setOne(ctx, im.items[0])
	} else {
		results, err = im.st.SetMany(ctx, im.items)
	}
	if err != nil {
		return im.c.fail(fmt.Sprintf("%s: lines %d to %d", what, im.lines[0], im.lines[len(im.lines)-1]), err)
	}
	var first error
	for i, r := range results {
		switch {
		case r.Err != nil:
			if first == nil {
				first = im.c.fail(fmt.Sprintf("%s: line %d", what, im.lines[i]), r.Err)
				if errors.Is(r.Err, subjects.ErrTTLDisabled) {
					first = fmt.Errorf("%w; allow TTLs with 'persist config %s --allow-msg-ttl'", first, im.st.Name())
				}
			}
		case r.Duplicate:
			im.stats.Duplicates++
		default:
			im.stats.Stored++
		}
	}
	im.items, im.lines, im.bodyBytes = im.items[:0], im.lines[:0], 0
	return first
}

// setOne writes one item with set, as a one-entry setmany result.
func (im *importer) setOne(ctx context.Context, it client.Item) ([]client.Result, error) {
	opts := []client.SetOption{client.WithMsgID(it.MsgID)}
	if it.Key != "" {
		opts = append(opts, client.WithKey(it.Key))
	}
	if it.Header != nil {
		opts = append(opts, client.WithHeader(it.Header))
	}
	if it.TTL != 0 {
		opts = append(opts, client.WithTTL(it.TTL))
	}
	ack, err := im.st.Set(ctx, it.Data, opts...)
	var perr *subjects.Error
	if errors.As(err, &perr) {
		return []client.Result{{Err: perr}}, nil
	}
	return []client.Result{{Ack: ack}}, err
}
