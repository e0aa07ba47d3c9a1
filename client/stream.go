package client

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// Stream is a handle on one named stream. It is safe for concurrent use.
type Stream struct {
	c    *Client
	name string
}

// Name returns the stream's name.
func (s *Stream) Name() string { return s.name }

// setOptions collects the [SetOption] values of one write.
type setOptions struct {
	key         *string
	previousSeq *uint64
	msgID       *string
	ttl         time.Duration
	header      nats.Header
}

// SetOption qualifies a [Stream.Set].
type SetOption func(*setOptions)

// WithKey makes the write keyed: once it commits, no other message of the
// stream has key. A key the protocol does not allow (empty, more than
// 1024 bytes, not UTF-8, a control character, white space at either end)
// is refused before sending with an error wrapping [ErrInvalidHeader]: a
// key travels as a NATS header value, which would silently lose white
// space at its ends.
func WithKey(key string) SetOption { return func(o *setOptions) { o.key = &key } }

// WithPreviousSeq makes a keyed write conditional: it commits only if the
// key's current message has seq n, or, for n == 0, if the key is absent.
// Otherwise the error is [ErrWrongLastSequence].
func WithPreviousSeq(n uint64) SetOption { return func(o *setOptions) { o.previousSeq = &n } }

// WithMsgID deduplicates the write with the caller's own id: a retry with
// the same id within the stream's duplicate window writes nothing and
// acknowledges the first write. Without this option the client makes up an
// id (see [NewMsgID]) unless the client was made [WithoutMsgIDs]; an empty
// id sends none. An id that begins or ends with white space or holds a
// line break is refused like a key (see [WithKey]).
func WithMsgID(id string) SetOption { return func(o *setOptions) { o.msgID = &id } }

// WithTTL makes the message expire after d; the stream must allow it. A
// negative d is refused with an error wrapping [ErrInvalidHeader].
func WithTTL(d time.Duration) SetOption { return func(o *setOptions) { o.ttl = d } }

// WithHeader adds user headers to the message. Names starting with
// "Nats-" are not stored. A name the worker refuses (see
// [subjects.ClassifyHeader]; any "Persist-" name but the protocol's own)
// and a value that begins or ends with white space or holds a line break
// (NATS headers do not carry them as given) are refused before sending,
// with an error wrapping [ErrInvalidHeader].
func WithHeader(h nats.Header) SetOption {
	return func(o *setOptions) {
		if o.header == nil {
			o.header = nats.Header{}
		}
		for k, vs := range h {
			o.header[k] = append(o.header[k], vs...)
		}
	}
}

// Set appends one message with payload data.
//
// The write is retried after a retryable failure (see [IsRetryable] and
// [WithRetry]) with the same msg id, so that it is stored once however
// many attempts it takes: an attempt whose reply was lost is answered,
// on the next one, with the first write's seq and Duplicate set. Keep
// the stream's duplicate_window longer than the client's retries take.
func (s *Stream) Set(ctx context.Context, data []byte, opts ...SetOption) (Ack, error) {
	var o setOptions
	for _, opt := range opts {
		opt(&o)
	}
	hdr := nats.Header{}
	for k, vs := range o.header {
		hdr[k] = append([]string(nil), vs...)
	}
	if o.key != nil {
		hdr[subjects.HeaderKey] = []string{*o.key}
	}
	if o.previousSeq != nil {
		hdr[subjects.HeaderPreviousSeq] = []string{strconv.FormatUint(*o.previousSeq, 10)}
	}
	// An id given as a header is the caller's own, checked below like any.
	if _, given := hdr[subjects.HeaderMsgID]; !given || o.msgID != nil {
		if id := s.c.msgID(o.msgID); id != "" {
			hdr[subjects.HeaderMsgID] = []string{id}
		} else {
			delete(hdr, subjects.HeaderMsgID)
		}
	}
	if o.ttl < 0 {
		return Ack{}, fmt.Errorf("%w: TTL %v is not positive", ErrInvalidHeader, o.ttl)
	}
	if o.ttl != 0 {
		hdr[subjects.HeaderTTL] = []string{o.ttl.String()}
	}
	if err := checkHeader(hdr); err != nil {
		return Ack{}, err
	}
	if err := s.c.checkSize("set", hdr, data); err != nil {
		return Ack{}, err
	}
	if len(hdr) == 0 {
		hdr = nil
	}
	var ack Ack
	err := s.c.retrying(ctx, hdr.Get(subjects.HeaderMsgID) != "", func() error {
		return s.c.call(ctx, subjects.OpSet, s.name, hdr, data, &ack)
	})
	return ack, err
}

// msgID returns the id a write sends: the caller's, or a fresh one.
func (c *Client) msgID(given *string) string {
	switch {
	case given != nil:
		return *given
	case c.noIDs:
		return ""
	}
	return NewMsgID()
}

// Item is one message of a [Stream.SetMany].
type Item struct {
	Data        []byte
	Key         string
	Header      nats.Header
	MsgID       string        // "" gets a fresh id unless the client is WithoutMsgIDs
	TTL         time.Duration // rounded down to whole milliseconds
	PreviousSeq *uint64       // with Key; 0 means the key must be absent
}

// Result is the outcome of one [Item]: its Ack, or Err (a *[Error])
// when the worker refused that item alone.
type Result struct {
	Ack
	Err error
}

// wire checks the item as [Stream.Set] checks its options and returns its
// setmany form, with a msg id unless the client is WithoutMsgIDs.
func (it Item) wire(c *Client) (subjects.SetManyItem, error) {
	data := it.Data
	if data == nil {
		data = []byte{} // "data" is required: send "" rather than null
	}
	w := subjects.SetManyItem{Data: &data, Headers: it.Header, PreviousSeq: it.PreviousSeq}
	hdr := nats.Header{}
	for k, vs := range it.Header {
		hdr[k] = vs
	}
	if it.Key != "" {
		w.Key = &it.Key
		hdr[subjects.HeaderKey] = []string{it.Key}
	}
	id := it.MsgID
	if id == "" && !c.noIDs {
		id = NewMsgID()
	}
	if id != "" {
		w.MsgID = &id
		hdr[subjects.HeaderMsgID] = []string{id}
	}
	if it.TTL != 0 {
		ms := it.TTL.Milliseconds()
		if ms <= 0 {
			return w, fmt.Errorf("%w: TTL %v is not a positive number of milliseconds", ErrInvalidHeader, it.TTL)
		}
		w.TTL = &ms
	}
	if it.PreviousSeq != nil && it.Key == "" {
		return w, fmt.Errorf("%w: a previous seq needs a key", ErrInvalidHeader)
	}
	if err := checkHeader(hdr); err != nil {
		return w, err
	}
	return w, nil
}

// SetMany appends up to [MaxSetMany] messages in order, in one transaction.
// An item that fails does not stop the others: its Result carries the
// error. The returned error means nothing was written.
//
// Like [Stream.Set], each item gets a msg id unless it has one, and the
// whole batch is retried with the same ids after a retryable failure: an
// item that was written by a lost attempt is acknowledged as a duplicate
// with its first seq. An item refused before sending (a bad key or header,
// see [ErrInvalidHeader]) fails the call, and so does a batch larger than
// the NATS server's max payload ([ErrTooLarge]): split it.
func (s *Stream) SetMany(ctx context.Context, items []Item) ([]Result, error) {
	if len(items) > MaxSetMany {
		return nil, fmt.Errorf("client: setmany of %d items, at most %d", len(items), MaxSetMany)
	}
	wire := make([]subjects.SetManyItem, len(items))
	ids := true
	for i, it := range items {
		w, err := it.wire(s.c)
		if err != nil {
			return nil, fmt.Errorf("client: setmany item %d: %w", i, err)
		}
		wire[i] = w
		ids = ids && w.MsgID != nil
	}
	body, err := json.Marshal(wire)
	if err != nil {
		return nil, err
	}
	if err := s.c.checkSize("setmany", nil, body); err != nil {
		return nil, err
	}
	var reply []subjects.SetManyEntry
	err = s.c.retrying(ctx, ids, func() error {
		return s.c.call(ctx, subjects.OpSetMany, s.name, nil, body, &reply)
	})
	if err != nil {
		return nil, err
	}
	if len(reply) != len(items) {
		return nil, fmt.Errorf("%w: setmany reply has %d entries for %d items", ErrBadReply, len(reply), len(items))
	}
	out := make([]Result, len(reply))
	for i, r := range reply {
		out[i].Ack = r.SetReply
		if r.Error != nil {
			out[i].Err = r.Error
		}
	}
	return out, nil
}

// Get returns the message with seq, or [ErrNotFound].
func (s *Stream) Get(ctx context.Context, seq uint64) (*Msg, error) {
	return s.get(ctx, subjects.GetRequest{Seq: &seq})
}

// GetKey returns the message with key, or [ErrNotFound].
func (s *Stream) GetKey(ctx context.Context, key string) (*Msg, error) {
	if err := subjects.ValidateKey(key); err != nil {
		return nil, ErrBadRequest.WithDescription(err.Error()) // as the worker would answer
	}
	return s.get(ctx, subjects.GetRequest{Key: &key})
}

func (s *Stream) get(ctx context.Context, q subjects.GetRequest) (*Msg, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	var m *nats.Msg
	err = s.c.retrying(ctx, true, func() (err error) {
		m, err = s.c.request(ctx, subjects.OpGet, s.name, nil, body)
		return err
	})
	if err != nil {
		return nil, err
	}
	return DecodeMsg(m)
}

// DeleteSeq removes the message with seq and returns how many were removed.
func (s *Stream) DeleteSeq(ctx context.Context, seq uint64) (int64, error) {
	return s.delete(ctx, subjects.DeleteRequest{Seq: &seq})
}

// DeleteSeqs removes the messages with the given seqs (at most
// [MaxDeleteSeqs]).
func (s *Stream) DeleteSeqs(ctx context.Context, seqs ...uint64) (int64, error) {
	if len(seqs) > MaxDeleteSeqs {
		return 0, fmt.Errorf("client: delete of %d seqs, at most %d", len(seqs), MaxDeleteSeqs)
	}
	if seqs == nil {
		seqs = []uint64{}
	}
	return s.delete(ctx, subjects.DeleteRequest{Seqs: &seqs})
}

// DeleteThrough removes every message with a seq up to and including seq.
func (s *Stream) DeleteThrough(ctx context.Context, seq uint64) (int64, error) {
	return s.delete(ctx, subjects.DeleteRequest{LastSeq: &seq})
}

// DeleteKey removes the message with key.
func (s *Stream) DeleteKey(ctx context.Context, key string) (int64, error) {
	if err := subjects.ValidateKey(key); err != nil {
		return 0, ErrBadRequest.WithDescription(err.Error()) // as the worker would answer
	}
	return s.delete(ctx, subjects.DeleteRequest{Key: &key})
}

// DeleteAll removes every message; seqs keep counting up afterwards.
func (s *Stream) DeleteAll(ctx context.Context) (int64, error) {
	all := true
	return s.delete(ctx, subjects.DeleteRequest{All: &all})
}

// delete sends a delete. It is not retried after a timeout, since a lost
// reply would turn into a count of 0 on the next attempt.
func (s *Stream) delete(ctx context.Context, d subjects.DeleteRequest) (int64, error) {
	body, err := json.Marshal(d)
	if err != nil {
		return 0, err
	}
	var reply subjects.CountReply
	err = s.c.retrying(ctx, false, func() error {
		return s.c.call(ctx, subjects.OpDelete, s.name, nil, body, &reply)
	})
	return reply.Count, err
}

// Config returns the stream's configuration; a stream that does not exist
// answers the defaults.
func (s *Stream) Config(ctx context.Context) (Config, error) {
	var c Config
	err := s.c.retrying(ctx, true, func() error {
		return s.c.call(ctx, subjects.OpConfig, s.name, nil, nil, &c)
	})
	return c, err
}

// UpdateConfig applies patch and returns the full new configuration. A
// patch that changes something creates the stream if it does not exist.
// Applying a patch twice is applying it once, so it is retried like a
// read.
func (s *Stream) UpdateConfig(ctx context.Context, patch ConfigPatch) (Config, error) {
	body, err := json.Marshal(patch)
	if err != nil {
		return Config{}, err
	}
	var c Config
	err = s.c.retrying(ctx, true, func() error {
		return s.c.call(ctx, subjects.OpConfig, s.name, nil, body, &c)
	})
	return c, err
}

// Inventory returns the stream's counts, seqs and revision; a stream that
// does not exist answers zeros.
func (s *Stream) Inventory(ctx context.Context) (Inventory, error) {
	var inv Inventory
	err := s.c.retrying(ctx, true, func() error {
		return s.c.call(ctx, subjects.OpInventory, s.name, nil, nil, &inv)
	})
	return inv, err
}

// Locate asks which worker serves stream, or would serve it: it neither
// opens nor creates the stream. With partitioned workers the owner of the
// stream's partition answers, with the partition; a partition on the move
// answers 503 unavailable, which is retried.
func (c *Client) Locate(ctx context.Context, stream string) (Location, error) {
	var loc Location
	err := c.retrying(ctx, true, func() error {
		loc = Location{}
		if err := c.call(ctx, subjects.OpLocate, stream, nil, nil, &loc); err != nil {
			return err
		}
		if loc.Stream != stream || loc.Worker == "" {
			return fmt.Errorf("%w: locate %s: the reply names stream %q, worker %q", ErrBadReply, stream, loc.Stream, loc.Worker)
		}
		if p := loc.Partition; (p == nil) != (loc.PartitionCount == 0) || p != nil && (*p < 0 || *p >= loc.PartitionCount) {
			return fmt.Errorf("%w: locate %s: a partition without a count, or out of range", ErrBadReply, stream)
		}
		return nil
	})
	return loc, err
}

// KeysPage returns one page of the stream's keys in byte order, starting
// after after, at most limit of them (0: the worker's default of 1000).
// more reports that there are further keys.
func (s *Stream) KeysPage(ctx context.Context, after string, limit int) (keys []string, more bool, err error) {
	var reply subjects.KeysReply
	err = s.c.page(ctx, subjects.OpKeys, s.name, after, limit, &reply)
	return reply.Keys, reply.More, err
}

// Keys yields every key of the stream in byte order, asking page after
// page; it stops at the first error, which it yields with an empty key.
// Keys written or deleted while it runs may or may not be seen.
func (s *Stream) Keys(ctx context.Context) iter.Seq2[string, error] {
	return pages(func(after string) ([]string, bool, error) { return s.KeysPage(ctx, after, 0) })
}

// ListPage returns one page of the names of the streams under prefix
// (whole tokens: "acme" lists "acme" and "acme.x", not "acmecorp"),
// sorted, starting after the stream after, at most limit of them (0: the
// worker's default of 1000). more reports that there are further names.
func (c *Client) ListPage(ctx context.Context, prefix, after string, limit int) (names []string, more bool, err error) {
	var reply subjects.ListReply
	err = c.page(ctx, subjects.OpList, prefix, after, limit, &reply)
	return reply.Streams, reply.More, err
}

// List yields the names of every stream under prefix (see
// [Client.ListPage]) in byte order, asking page after page; it stops at
// the first error, which it yields with an empty name.
func (c *Client) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return pages(func(after string) ([]string, bool, error) { return c.ListPage(ctx, prefix, after, 0) })
}

// page sends a keys or list request.
func (c *Client) page(ctx context.Context, op, stream, after string, limit int, out any) error {
	if limit < 0 {
		return fmt.Errorf("client: %s limit %d is negative", op, limit)
	}
	body, err := json.Marshal(subjects.PageRequest{After: after, Limit: uint64(limit)})
	if err != nil {
		return err
	}
	return c.retrying(ctx, true, func() error { return c.call(ctx, op, stream, nil, body, out) })
}

// pages turns a paged listing into an iterator. A page must move forward
// (its names above the last one seen), else a faulty worker could make it
// loop forever.
func pages(next func(after string) ([]string, bool, error)) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		after := ""
		for {
			names, more, err := next(after)
			if err != nil {
				yield("", err)
				return
			}
			for _, n := range names {
				if n <= after && after != "" {
					yield("", fmt.Errorf("%w: %q does not come after %q", ErrBadReply, n, after))
					return
				}
				after = n
				if !yield(n, nil) {
					return
				}
			}
			if !more {
				return
			}
			if len(names) == 0 {
				yield("", fmt.Errorf("%w: an empty page with more to come", ErrBadReply))
				return
			}
		}
	}
}

// Destroy removes the stream and its file; a later write starts a new
// stream at seq 1 and revision 0. A stream that does not exist is
// [ErrNotFound]. It is not retried after a timeout, since a lost reply
// would turn into not_found on the next attempt.
func (s *Stream) Destroy(ctx context.Context) error {
	var reply subjects.OKReply
	err := s.c.retrying(ctx, false, func() error {
		return s.c.call(ctx, subjects.OpDestroy, s.name, nil, nil, &reply)
	})
	if err != nil {
		return err
	}
	if !reply.OK {
		return fmt.Errorf("%w: destroy of %s not acknowledged", ErrBadReply, s.name)
	}
	return nil
}
