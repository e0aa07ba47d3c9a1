package store

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-persist/persist/subjects"
)

// Errors returned by the store. The broker maps each of them to a wire code
// in exactly one table; anything else is an internal error.
var (
	ErrNotFound          = errors.New("store: not found")                         // no message with that seq or key
	ErrWrongLastSequence = errors.New("store: wrong last sequence")               // PreviousSeq did not match
	ErrMsgTooLarge       = errors.New("store: message too large")                 // larger than max_msg_size or max_bytes
	ErrRateLimited       = errors.New("store: rate limited")                      // max_msgs_per_second or max_bytes_per_second
	ErrLimitReached      = errors.New("store: limit reached")                     // discard new, or the memory quota is full
	ErrTTLDisabled       = errors.New("store: message TTL is not allowed")        // TTL without allow_msg_ttl
	ErrInvalid           = errors.New("store: invalid argument")                  // bad config, bad key, bad write
	ErrCorrupt           = errors.New("store: not a stream file or damaged")      // file left as it is
	ErrClosed            = errors.New("store: stream is closed")                  // use after Close
	ErrLocked            = errors.New("store: file is locked by another process") // another program holds the stream's file
	ErrTooManyOpen       = errors.New("store: too many open files")               // the process is out of file descriptors
	ErrStorageFull       = errors.New("store: storage full")                      // the disk is full; nothing was written
	ErrRevisionGone      = errors.New("store: revision gone")                     // Changes: a change after it is no longer kept, or it is ahead
	// ErrFenced: the stream's fence names another owner, which writes it
	// now; nothing was written. It is an ErrLocked, as a file another
	// program holds is.
	ErrFenced = fmt.Errorf("%w: the stream's fence names another owner", ErrLocked)
)

// What one open file stream costs the process, for budgets that bound how
// many streams are open at once. The broker divides its memory budget by
// OpenStreamBytes and its descriptor budget by FilesPerStream.
const (
	// FilesPerStream is the file descriptors an open file stream holds:
	// the database and its -wal, which SQLite opens, and the descriptor
	// that holds the stream's lock.
	FilesPerStream = 3
	// OpenStreamBytes is the memory an open, idle file stream holds after
	// [Stream.Trim], measured by BenchmarkOpenStreamMemory (65.3 KB in a
	// fresh process, rounded up): mostly SQLite's WAL index (32 KiB, kept
	// in private memory while the stream is open), its connection and
	// parsed schema, and a few KB of Go structures.
	OpenStreamBytes = 64 << 10
	// ActiveStreamBytes is the memory of an open file stream that was used
	// since its last Trim: its prepared statements, page cache and C stack
	// come back with use (112-117 KB in BenchmarkOpenStreamMemory).
	ActiveStreamBytes = 128 << 10
)

// Config is a stream's configuration: the protocol's config table, with
// its defaults, validation and patch parsing in package subjects. The
// store's own encoding of it on disk is in storedconfig.go.
type Config = subjects.Config

// Message is one stored message as readers see it: payload decompressed,
// headers decoded.
type Message struct {
	Seq     uint64
	Time    int64 // Unix ms, assigned on write
	Key     string
	Header  map[string][]string // user headers; values in order per name
	Data    []byte
	Expires int64 // Unix ms; 0 when the message has no TTL
}

// Size is the message's size for limits: payload, key, and every header
// name and value.
func (m *Message) Size() int64 { return MsgSize(m.Data, m.Key, m.Header) }

// MsgSize is [Message.Size] for the parts of a message.
func MsgSize(data []byte, key string, header map[string][]string) int64 {
	n := int64(len(data) + len(key))
	for name, vals := range header {
		for _, v := range vals {
			n += int64(len(name) + len(v))
		}
	}
	return n
}

// Write is one message to append.
type Write struct {
	Data        []byte
	Header      map[string][]string
	Key         string        // "" for an unkeyed message
	PreviousSeq *uint64       // with Key: write only if the key's message has this seq (0: key absent)
	MsgID       string        // deduplication id; "" for none
	TTL         time.Duration // 0 for none; needs allow_msg_ttl
}

// WriteResult is the outcome of one [Write]. Err is one of the store's
// errors when this item was refused; the other items of the batch are not
// affected.
type WriteResult struct {
	Seq       uint64
	Time      int64
	Duplicate bool
	Err       error
}

// Event is one committed change. Revision is the stream's revision after
// the change: each event increments it by exactly one. [Stream.Changes]
// answers with Event values too: the same change as its live event, but
// without MsgID, and a delete with its Keys.
type Event struct {
	Op       string // one of subjects.OpSet, subjects.OpDelete, subjects.OpConfig, subjects.OpDestroy
	Revision uint64
	Msg      *Message    // subjects.OpSet
	MsgID    string      // subjects.OpSet, live events only: the write's message id ("": none)
	Ranges   [][2]uint64 // subjects.OpDelete: inclusive seq ranges, ascending
	Reason   string      // subjects.OpDelete: one of the subjects.Reason* names
	Keys     []string    // subjects.OpDelete, Changes only: the keys of the keyed messages it removed, sorted
	Config   *Config     // subjects.OpConfig
}

// ReadQuery selects a page of messages for [Stream.Read]. Zero fields mean
// "from the start", "to the end" and "no bound".
type ReadQuery struct {
	StartSeq  uint64
	EndSeq    uint64 // inclusive; 0 means the last seq
	StartTime int64  // Unix ms: messages with Time >= StartTime
	MaxMsgs   int    // bound on messages in this page; 0 means no bound
	MaxBytes  int64  // bound on Size() in this page; at least one message is always sent
}

// ReadResult describes a page read by [Stream.Read], as of the read.
type ReadResult struct {
	LastSeq    uint64
	Revision   uint64
	NumPending int64  // messages in the range not delivered
	NextSeq    uint64 // seq to continue from when NumPending > 0
}

// Inventory summarises a stream: the inventory reply of the protocol.
type Inventory = subjects.Inventory

// Quota is a budget of bytes shared by several streams (the worker's
// memory-stream quota). The zero value is unlimited; it is safe for
// concurrent use.
type Quota struct {
	limit int64
	used  atomic.Int64
}

// NewQuota returns a quota of limit bytes; limit <= 0 is unlimited.
func NewQuota(limit int64) *Quota { return &Quota{limit: limit} }

// Reserve takes n bytes from the quota and reports whether they fit.
func (q *Quota) Reserve(n int64) bool {
	if q == nil {
		return true
	}
	if q.used.Add(n) > q.limit && q.limit > 0 && n > 0 {
		q.used.Add(-n)
		return false
	}
	return true
}

// Release gives n bytes back.
func (q *Quota) Release(n int64) {
	if q != nil {
		q.used.Add(-n)
	}
}

// Used reports the bytes taken.
func (q *Quota) Used() int64 {
	if q == nil {
		return 0
	}
	return q.used.Load()
}

// validConfig is [Config.Validate] with the store's error: ErrInvalid and
// what is wrong.
func validConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, description(err))
	}
	return nil
}

// description is the description of a protocol error, or the text of any
// other error.
func description(err error) string {
	var we *subjects.Error
	if errors.As(err, &we) {
		return we.Description
	}
	return err.Error()
}
