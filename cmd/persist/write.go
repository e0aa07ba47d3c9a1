package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

func (c *cli) declareSet(app *kingpin.Application) {
	var (
		stream, data, key, msgID string
		ttl                      time.Duration
		headers                  []string
		prev                     uint64
		prevSet                  bool
	)
	cmd := app.Command("set", "Append one message; DATA - or none reads the payload from standard input.")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	cmd.Arg("data", "The payload, or - for standard input.").StringVar(&data)
	cmd.Flag("key", "Keyed write: replaces the stream's message with this key.").Short('k').PlaceHolder("KEY").StringVar(&key)
	cmd.Flag("ttl", "Expire the message after this long (90s, 2h); the stream must allow TTLs.").PlaceHolder("DURATION").DurationVar(&ttl)
	cmd.Flag("msg-id", "Deduplicate: a second set with this id within the duplicate window writes nothing.").PlaceHolder("ID").StringVar(&msgID)
	cmd.Flag("header", "A user header NAME:VALUE; repeat for more.").Short('H').PlaceHolder("NAME:VALUE").StringsVar(&headers)
	cmd.Flag("previous-seq", "Write only if the key's message has this seq (0: the key must not exist).").PlaceHolder("SEQ").IsSetByUser(&prevSet).Uint64Var(&prev)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		if err := checkStream(stream); err != nil {
			return err
		}
		hdr, err := parseHeaders(headers)
		if err != nil {
			return err
		}
		if ttl < 0 {
			return command.Usagef("--ttl %v: must be positive", ttl)
		}
		if prevSet && key == "" {
			return command.Usagef("--previous-seq needs --key")
		}
		var opts []client.SetOption
		if key != "" {
			opts = append(opts, client.WithKey(key))
		}
		if prevSet {
			opts = append(opts, client.WithPreviousSeq(prev))
		}
		if msgID != "" {
			opts = append(opts, client.WithMsgID(msgID))
		}
		if ttl != 0 {
			opts = append(opts, client.WithTTL(ttl))
		}
		if hdr != nil {
			opts = append(opts, client.WithHeader(hdr))
		}
		payload := []byte(data)
		if data == "" || data == "-" {
			if c.isTerminal(c.stdin) {
				fmt.Fprintln(c.stderr, "persist: reading the payload from standard input; end it with Ctrl-D")
			}
			if payload, err = io.ReadAll(c.stdin); err != nil {
				return fmt.Errorf("set %s: read standard input: %w", stream, err)
			}
		}
		cl, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		ack, err := cl.Stream(stream).Set(ctx, payload, opts...)
		if err != nil {
			return c.fail("set "+stream, err)
		}
		if c.json {
			return c.printer().value(ack)
		}
		if ack.Duplicate {
			fmt.Fprintf(c.stdout, "duplicate of seq %d (%s): nothing written\n", ack.Seq, formatTime(ack.Time))
			return nil
		}
		fmt.Fprintf(c.stdout, "stored seq %d (%s)\n", ack.Seq, formatTime(ack.Time))
		return nil
	}
}

// parseHeaders reads NAME:VALUE pairs, repeated names keeping their order.
func parseHeaders(pairs []string) (nats.Header, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	h := nats.Header{}
	for _, p := range pairs {
		name, value, ok := strings.Cut(p, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, command.Usagef("--header %q: want NAME:VALUE", p)
		}
		// "X-A: b" is how headers are written; the space is not the value's.
		h[name] = append(h[name], strings.TrimSpace(value))
	}
	return h, nil
}

func (c *cli) declareDelete(app *kingpin.Application) {
	var (
		stream, key, seqs string
		seq, through      uint64
		all, force        bool
		seqSet, thSet     bool
	)
	cmd := app.Command("delete", "Remove messages: exactly one of --seq, --seqs, --through, --key, --all.")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	cmd.Flag("seq", "The message with this seq.").PlaceHolder("SEQ").IsSetByUser(&seqSet).Uint64Var(&seq)
	cmd.Flag("seqs", "The messages with these seqs, comma separated (at most 10000).").PlaceHolder("1,2,5").StringVar(&seqs)
	cmd.Flag("through", "Every message with a seq up to and including this one.").PlaceHolder("SEQ").IsSetByUser(&thSet).Uint64Var(&through)
	cmd.Flag("key", "The message with this key.").Short('k').PlaceHolder("KEY").StringVar(&key)
	cmd.Flag("all", "Every message (asks first, unless --force).").BoolVar(&all)
	cmd.Flag("force", "Do not ask before --all.").Short('f').BoolVar(&force)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		if err := checkStream(stream); err != nil {
			return err
		}
		n := 0
		for _, set := range []bool{seqSet, seqs != "", thSet, key != "", all} {
			if set {
				n++
			}
		}
		if n != 1 {
			return command.Usagef("delete %s: give exactly one of --seq, --seqs, --through, --key, --all", stream)
		}
		var list []uint64
		if seqs != "" {
			for f := range strings.SplitSeq(seqs, ",") {
				v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
				if err != nil {
					return command.Usagef("--seqs %q: %q is not a seq (a whole number)", seqs, f)
				}
				list = append(list, v)
			}
		}
		if all && !force {
			if !c.isTerminal(c.stdin) {
				return command.Usagef("delete %s --all: not asking without a terminal: add --force", stream)
			}
			if err := c.confirm(fmt.Sprintf("Delete every message of %s?", stream)); err != nil {
				return err
			}
		}
		cl, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		st := cl.Stream(stream)
		var count int64
		switch {
		case seqSet:
			count, err = st.DeleteSeq(ctx, seq)
		case list != nil:
			count, err = st.DeleteSeqs(ctx, list...)
		case thSet:
			count, err = st.DeleteThrough(ctx, through)
		case key != "":
			count, err = st.DeleteKey(ctx, key)
		default:
			count, err = st.DeleteAll(ctx)
		}
		if err != nil {
			return c.fail("delete "+stream, err)
		}
		if c.json {
			return c.printer().value(map[string]int64{"count": count})
		}
		fmt.Fprintf(c.stdout, "deleted %d %s\n", count, plural(count, "message"))
		return nil
	}
}

func plural(n int64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// confirm asks question on the terminal (the caller has checked there is
// one) and returns nil for yes.
func (c *cli) confirm(question string) error {
	fmt.Fprintf(c.stderr, "%s [y/N] ", question)
	line, _ := bufio.NewReader(c.stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return &failure{msg: "not confirmed; nothing changed"}
}

func (c *cli) declareDestroy(app *kingpin.Application) {
	var (
		stream string
		force  bool
	)
	cmd := app.Command("destroy", "Remove a stream and its file (asks first, unless --force).")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	cmd.Flag("force", "Do not ask.").Short('f').BoolVar(&force)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		if err := checkStream(stream); err != nil {
			return err
		}
		if !force && !c.isTerminal(c.stdin) {
			return command.Usagef("destroy %s: not asking without a terminal: add --force", stream)
		}
		cl, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		st := cl.Stream(stream)
		if !force {
			inv, err := st.Inventory(ctx)
			if err != nil {
				return c.fail("destroy "+stream, err)
			}
			if err := c.confirm(fmt.Sprintf("Destroy stream %s and its %d %s?", stream, inv.Count, plural(inv.Count, "message"))); err != nil {
				return err
			}
		}
		if err := st.Destroy(ctx); err != nil {
			return c.fail("destroy "+stream, err)
		}
		if c.json {
			return c.printer().value(map[string]bool{"ok": true})
		}
		fmt.Fprintf(c.stdout, "destroyed %s\n", stream)
		return nil
	}
}

// configFlags are the config verb's flags, one per config field; set
// reports which were given.
type configFlags struct {
	maxMsgs, maxBytes, maxAge, maxMsgSize          string
	maxMsgsPerSecond, maxBytesPerSecond            string
	discard, storage, compression, threshold, desc string
	dupWindow                                      string
	allowTTL, sync                                 bool
	allowTTLSet, syncSet                           bool
}

func (c *cli) declareConfig(app *kingpin.Application) {
	var (
		stream string
		f      configFlags
	)
	cmd := app.Command("config", "Show a stream's configuration, or change the fields given.")
	cmd.Arg("stream", "Stream name.").Required().StringVar(&stream)
	cmd.Flag("max-msgs", "Most messages; -1 unlimited.").PlaceHolder("N").StringVar(&f.maxMsgs)
	cmd.Flag("max-bytes", "Most total size (1048576, 512KiB, 1GiB); -1 unlimited.").PlaceHolder("SIZE").StringVar(&f.maxBytes)
	cmd.Flag("max-age", "Remove messages older than this (24h, 30d); 0 unlimited.").PlaceHolder("DURATION").StringVar(&f.maxAge)
	cmd.Flag("max-msg-size", "Largest message accepted; -1 unlimited.").PlaceHolder("SIZE").StringVar(&f.maxMsgSize)
	cmd.Flag("max-msgs-per-second", "Write rate limit in messages; -1 unlimited.").PlaceHolder("N").StringVar(&f.maxMsgsPerSecond)
	cmd.Flag("max-bytes-per-second", "Write rate limit in bytes; -1 unlimited.").PlaceHolder("SIZE").StringVar(&f.maxBytesPerSecond)
	cmd.Flag("discard", "When a limit is full: old drops the oldest, new refuses the write.").PlaceHolder("old|new").EnumVar(&f.discard, subjects.DiscardOld, subjects.DiscardNew)
	cmd.Flag("allow-msg-ttl", "Allow set --ttl (--no-allow-msg-ttl forbids it).").IsSetByUser(&f.allowTTLSet).BoolVar(&f.allowTTL)
	cmd.Flag("duplicate-window", "How long a --msg-id is remembered (2m, 24h).").PlaceHolder("DURATION").StringVar(&f.dupWindow)
	cmd.Flag("sync", "fsync every commit before replying (--no-sync turns it off).").IsSetByUser(&f.syncSet).BoolVar(&f.sync)
	cmd.Flag("storage", "file or memory; only when the stream is created.").PlaceHolder("file|memory").EnumVar(&f.storage, subjects.StorageFile, subjects.StorageMemory)
	cmd.Flag("compression", "zstd or none.").PlaceHolder("zstd|none").EnumVar(&f.compression, subjects.CompressionZstd, subjects.CompressionNone)
	cmd.Flag("compression-threshold", "Payloads above this size are compressed.").PlaceHolder("SIZE").StringVar(&f.threshold)
	cmd.Flag("desc", "A description: any JSON (a bare word is taken as a string; null clears it).").PlaceHolder("JSON").StringVar(&f.desc)
	c.verbs[cmd.FullCommand()] = func(ctx context.Context) error {
		if err := checkStream(stream); err != nil {
			return err
		}
		patch, changed, err := f.patch()
		if err != nil {
			return err
		}
		cl, nc, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		st := cl.Stream(stream)
		var cfg client.Config
		if changed {
			cfg, err = st.UpdateConfig(ctx, patch)
		} else {
			cfg, err = st.Config(ctx)
		}
		if err != nil {
			return c.fail("config "+stream, err)
		}
		if c.json {
			return c.printer().value(cfg)
		}
		writeConfig(c.stdout, cfg)
		return nil
	}
}

// patch turns the given flags into a config change; changed is false
// when no field was given (the verb then reads).
func (f *configFlags) patch() (p client.ConfigPatch, changed bool, err error) {
	num := func(flag, v string, parse func(string) (int64, error), dst **int64) {
		if v == "" || err != nil {
			return
		}
		n, perr := parse(v)
		if perr != nil {
			err = command.Usagef("--%s %q: %v", flag, v, perr)
			return
		}
		*dst, changed = &n, true
	}
	num("max-msgs", f.maxMsgs, parseCount, &p.MaxMsgs)
	num("max-bytes", f.maxBytes, parseSize, &p.MaxBytes)
	num("max-age", f.maxAge, parseMillis, &p.MaxAge)
	num("max-msg-size", f.maxMsgSize, parseSize, &p.MaxMsgSize)
	num("max-msgs-per-second", f.maxMsgsPerSecond, parseCount, &p.MaxMsgsPerSecond)
	num("max-bytes-per-second", f.maxBytesPerSecond, parseSize, &p.MaxBytesPerSecond)
	num("duplicate-window", f.dupWindow, parseMillis, &p.DuplicateWindow)
	num("compression-threshold", f.threshold, parseSize, &p.CompressionThreshold)
	if err != nil {
		return p, false, err
	}
	str := func(v string, dst **string) {
		if v != "" {
			*dst, changed = &v, true
		}
	}
	str(f.discard, &p.DiscardPolicy)
	str(f.storage, &p.Storage)
	str(f.compression, &p.Compression)
	if f.allowTTLSet {
		p.AllowMsgTTL, changed = &f.allowTTL, true
	}
	if f.syncSet {
		p.Sync, changed = &f.sync, true
	}
	if f.desc != "" {
		d := json.RawMessage(f.desc)
		if !json.Valid(d) {
			b, _ := json.Marshal(f.desc)
			d = b
		}
		p.Desc, changed = d, true
	}
	return p, changed, nil
}

// writeConfig prints a configuration as a table, limits in words.
func writeConfig(w io.Writer, cfg client.Config) {
	limit := func(n int64, format func(int64) string) string {
		if n < 0 {
			return "unlimited"
		}
		return format(n)
	}
	age := func(n int64) string {
		if n == 0 {
			return "unlimited"
		}
		return formatMillis(n)
	}
	count := func(n int64) string { return strconv.FormatInt(n, 10) }
	desc := "none"
	if len(cfg.Desc) > 0 && string(cfg.Desc) != "null" {
		desc = string(cfg.Desc)
	}
	rows := [][2]string{
		{"max_msgs", limit(cfg.MaxMsgs, count)},
		{"max_bytes", limit(cfg.MaxBytes, formatSize)},
		{"max_age", age(cfg.MaxAge)},
		{"max_msg_size", limit(cfg.MaxMsgSize, formatSize)},
		{"max_msgs_per_second", limit(cfg.MaxMsgsPerSecond, count)},
		{"max_bytes_per_second", limit(cfg.MaxBytesPerSecond, formatSize)},
		{"discard_policy", cfg.DiscardPolicy},
		{"allow_msg_ttl", strconv.FormatBool(cfg.AllowMsgTTL)},
		{"duplicate_window", formatMillis(cfg.DuplicateWindow)},
		{"sync", strconv.FormatBool(cfg.Sync)},
		{"storage", cfg.Storage},
		{"compression", cfg.Compression},
		{"compression_threshold", formatSize(cfg.CompressionThreshold)},
		{"desc", desc},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-22s %s\n", r[0]+":", r[1])
	}
}
