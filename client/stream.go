package client

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// MaxSetMany is the most items one [Stream.SetMany] call may carry.
const MaxSetMany = 1000

// Stream is a handle on one named stream. It is safe for concurrent use.
type Stream struct {
	c    *Client
	name string
}

// Name returns the stream's name.
func (s *Stream) Name() string { return s.name }

// Ack is the worker's answer to a committed write.
type Ack struct {
	Seq       uint64 `json:"seq"`
	Time      int64  `json:"time"`                // Unix ms
	Duplicate bool   `json:"duplicate,omitempty"` // an earlier write had the same msg id; nothing was written
}

// setOptions collects the [SetOption] values of one write.
type setOptions struct {
	key         *string
	previousSeq *uint64
	msgID       string
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
// Otherwise the error is [subjects.ErrWrongLastSequence].
func WithPreviousSeq(n uint64) SetOption { return func(o *setOptions) { o.previousSeq = &n } }

// WithMsgID deduplicates the write: a retry with the same id within the
// stream's duplicate window writes nothing and acknowledges the first write.
// An empty id means none; an id that begins or ends with white space or
// holds a line break is refused like a key (see [WithKey]).
func WithMsgID(id string) SetOption { return func(o *setOptions) { o.msgID = id } }

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
	if o.msgID != "" {
		hdr[subjects.HeaderMsgID] = []string{o.msgID}
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
	if len(hdr) == 0 {
		hdr = nil
	}
	var ack Ack
	err := s.c.call(ctx, subjects.OpSet, s.name, hdr, data, &ack)
	return ack, err
}

// Item is one message of a [Stream.SetMany].
type Item struct {
	Data        []byte
	Key         string
	Header      nats.Header
	MsgID       string
	TTL         time.Duration // rounded down to whole milliseconds
	PreviousSeq *uint64       // with Key; 0 means the key must be absent
}

// MarshalJSON encodes the item as the protocol's setmany element.
func (it Item) MarshalJSON() ([]byte, error) {
	var ttl int64
	if it.TTL != 0 {
		ttl = it.TTL.Milliseconds()
		if ttl <= 0 {
			return nil, fmt.Errorf("client: ttl %v is not a positive number of milliseconds", it.TTL)
		}
	}
	data := it.Data
	if data == nil {
		data = []byte{} // "data" is required: send "" rather than null
	}
	return json.Marshal(struct {
		Data        []byte              `json:"data"`
		Key         string              `json:"key,omitempty"`
		Headers     map[string][]string `json:"headers,omitempty"`
		MsgID       string              `json:"msg_id,omitempty"`
		TTL         int64               `json:"ttl,omitempty"`
		PreviousSeq *uint64             `json:"previous_seq,omitempty"`
	}{data, it.Key, it.Header, it.MsgID, ttl, it.PreviousSeq})
}

// Result is the outcome of one [Item]: its Ack, or Err (a *subjects.Error)
// when the worker refused that item alone.
type Result struct {
	Ack
	Err error
}

// SetMany appends up to [MaxSetMany] messages in order, in one transaction.
// An item that fails does not stop the others: its Result carries the
// error. The returned error means nothing was written.
func (s *Stream) SetMany(ctx context.Context, items []Item) ([]Result, error) {
	if len(items) > MaxSetMany {
		return nil, fmt.Errorf("client: setmany of %d items, at most %d", len(items), MaxSetMany)
	}
	if items == nil {
		items = []Item{}
	}
	body, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	var reply []struct {
		Ack
		Error *subjects.Error `json:"error"`
	}
	if err := s.c.call(ctx, subjects.OpSetMany, s.name, nil, body, &reply); err != nil {
		return nil, err
	}
	if len(reply) != len(items) {
		return nil, fmt.Errorf("client: setmany reply has %d entries for %d items", len(reply), len(items))
	}
	out := make([]Result, len(reply))
	for i, r := range reply {
		out[i].Ack = r.Ack
		if r.Error != nil {
			out[i].Err = r.Error
		}
	}
	return out, nil
}

// Get returns the message with seq, or [subjects.ErrNotFound].
func (s *Stream) Get(ctx context.Context, seq uint64) (*Msg, error) {
	return s.get(ctx, map[string]any{"seq": seq})
}

// GetKey returns the message with key, or [subjects.ErrNotFound].
func (s *Stream) GetKey(ctx context.Context, key string) (*Msg, error) {
	return s.get(ctx, map[string]any{"key": key})
}

func (s *Stream) get(ctx context.Context, q map[string]any) (*Msg, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	m, err := s.c.request(ctx, subjects.OpGet, s.name, nil, body)
	if err != nil {
		return nil, err
	}
	return DecodeMsg(m)
}

// DeleteSeq removes the message with seq and returns how many were removed.
func (s *Stream) DeleteSeq(ctx context.Context, seq uint64) (int64, error) {
	return s.delete(ctx, map[string]any{"seq": seq})
}

// DeleteSeqs removes the messages with the given seqs (at most 10000).
func (s *Stream) DeleteSeqs(ctx context.Context, seqs ...uint64) (int64, error) {
	if seqs == nil {
		seqs = []uint64{}
	}
	return s.delete(ctx, map[string]any{"seqs": seqs})
}

// DeleteThrough removes every message with a seq up to and including seq.
func (s *Stream) DeleteThrough(ctx context.Context, seq uint64) (int64, error) {
	return s.delete(ctx, map[string]any{"last_seq": seq})
}

// DeleteKey removes the message with key.
func (s *Stream) DeleteKey(ctx context.Context, key string) (int64, error) {
	return s.delete(ctx, map[string]any{"key": key})
}

// DeleteAll removes every message; seqs keep counting up afterwards.
func (s *Stream) DeleteAll(ctx context.Context) (int64, error) {
	return s.delete(ctx, map[string]any{"all": true})
}

func (s *Stream) delete(ctx context.Context, d map[string]any) (int64, error) {
	body, err := json.Marshal(d)
	if err != nil {
		return 0, err
	}
	var reply struct {
		Count int64 `json:"count"`
	}
	err = s.c.call(ctx, subjects.OpDelete, s.name, nil, body, &reply)
	return reply.Count, err
}

// Config is a stream's configuration; durations are milliseconds and -1
// means unlimited. See the protocol's config table.
type Config struct {
	MaxMsgs              int64           `json:"max_msgs"`
	MaxBytes             int64           `json:"max_bytes"`
	MaxAge               int64           `json:"max_age"`
	MaxMsgSize           int64           `json:"max_msg_size"`
	MaxMsgsPerSecond     int64           `json:"max_msgs_per_second"`
	MaxBytesPerSecond    int64           `json:"max_bytes_per_second"`
	DiscardPolicy        string          `json:"discard_policy"`
	AllowMsgTTL          bool            `json:"allow_msg_ttl"`
	DuplicateWindow      int64           `json:"duplicate_window"`
	Sync                 bool            `json:"sync"`
	Storage              string          `json:"storage"`
	Compression          string          `json:"compression"`
	CompressionThreshold int64           `json:"compression_threshold"`
	Desc                 json.RawMessage `json:"desc"`
}

// ConfigPatch is a change to a stream's configuration: nil fields are left
// as they are.
type ConfigPatch struct {
	MaxMsgs              *int64          `json:"max_msgs,omitempty"`
	MaxBytes             *int64          `json:"max_bytes,omitempty"`
	MaxAge               *int64          `json:"max_age,omitempty"`
	MaxMsgSize           *int64          `json:"max_msg_size,omitempty"`
	MaxMsgsPerSecond     *int64          `json:"max_msgs_per_second,omitempty"`
	MaxBytesPerSecond    *int64          `json:"max_bytes_per_second,omitempty"`
	DiscardPolicy        *string         `json:"discard_policy,omitempty"`
	AllowMsgTTL          *bool           `json:"allow_msg_ttl,omitempty"`
	DuplicateWindow      *int64          `json:"duplicate_window,omitempty"`
	Sync                 *bool           `json:"sync,omitempty"`
	Storage              *string         `json:"storage,omitempty"` // only when the stream is created
	Compression          *string         `json:"compression,omitempty"`
	CompressionThreshold *int64          `json:"compression_threshold,omitempty"`
	Desc                 json.RawMessage `json:"desc,omitempty"` // "null" clears it
}

// Config returns the stream's configuration; a stream that does not exist
// answers the defaults.
func (s *Stream) Config(ctx context.Context) (Config, error) {
	var c Config
	err := s.c.call(ctx, subjects.OpConfig, s.name, nil, nil, &c)
	return c, err
}

// UpdateConfig applies patch and returns the full new configuration. A
// patch that changes something creates the stream if it does not exist.
func (s *Stream) UpdateConfig(ctx context.Context, patch ConfigPatch) (Config, error) {
	body, err := json.Marshal(patch)
	if err != nil {
		return Config{}, err
	}
	var c Config
	err = s.c.call(ctx, subjects.OpConfig, s.name, nil, body, &c)
	return c, err
}

// Inventory summarises a stream.
type Inventory struct {
	Count    int64          `json:"count"`
	Bytes    int64          `json:"bytes"`
	FirstSeq uint64         `json:"first_seq"` // 0 when empty
	LastSeq  uint64         `json:"last_seq"`  // highest seq ever assigned
	Revision uint64         `json:"revision"`
	Limits   map[string]any `json:"limits"` // the configuration fields that differ from the defaults
}

// Inventory returns the stream's counts, seqs and revision; a stream that
// does not exist answers zeros.
func (s *Stream) Inventory(ctx context.Context) (Inventory, error) {
	var inv Inventory
	err := s.c.call(ctx, subjects.OpInventory, s.name, nil, nil, &inv)
	return inv, err
}

// Keys returns the stream's keys in byte order, starting after after, at
// most limit of them (0: the worker's default). more reports that there are
// further keys.
func (s *Stream) Keys(ctx context.Context, after string, limit int) (keys []string, more bool, err error) {
	body, err := json.Marshal(struct {
		After string `json:"after,omitempty"`
		Limit int    `json:"limit,omitempty"`
	}{after, limit})
	if err != nil {
		return nil, false, err
	}
	var reply struct {
		Keys []string `json:"keys"`
		More bool     `json:"more"`
	}
	if err := s.c.call(ctx, subjects.OpKeys, s.name, nil, body, &reply); err != nil {
		return nil, false, err
	}
	return reply.Keys, reply.More, nil
}

// Destroy removes the stream and its file; a later write starts a new
// stream at seq 1. A stream that does not exist is [subjects.ErrNotFound].
func (s *Stream) Destroy(ctx context.Context) error {
	var reply struct {
		OK bool `json:"ok"`
	}
	if err := s.c.call(ctx, subjects.OpDestroy, s.name, nil, nil, &reply); err != nil {
		return err
	}
	if !reply.OK {
		return fmt.Errorf("client: destroy of %s not acknowledged", s.name)
	}
	return nil
}
