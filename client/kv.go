package client

import (
	"context"
	"iter"
	"sync"

	"github.com/nats-persist/persist/subjects"
)

// KV is a stream used as a key-value store, in the shape of JetStream's
// KeyValue: each key's value is its keyed message, and the message's seq
// is the key's revision for optimistic concurrency ([KV.Update]). Unkeyed
// messages of the stream are not part of it.
type KV struct {
	s *Stream
}

// KV returns the stream named stream as a key-value store.
func (c *Client) KV(stream string) *KV { return &KV{s: c.Stream(stream)} }

// Stream returns the stream behind the store.
func (kv *KV) Stream() *Stream { return kv.s }

// KVOp says what a [KVEntry] is.
type KVOp string

// The operations of a [KVEntry].
const (
	KVPut    KVOp = "put"    // the key has this value
	KVDelete KVOp = "delete" // the key was removed
)

// KVEntry is one key's value, or the removal of a key in a watch.
type KVEntry struct {
	Key   string
	Value []byte // nil for a KVDelete
	// Seq is the seq of the key's message, the revision JetStream KV
	// users know: give it to [KV.Update]. For a KVDelete it is the seq of
	// the message removed.
	Seq  uint64
	Time int64 // Unix ms of the write
	Op   KVOp
}

func entry(m *Msg, op KVOp) *KVEntry {
	e := &KVEntry{Key: m.Key, Seq: m.Seq, Time: m.Time, Op: op}
	if op == KVPut {
		e.Value = m.Data
	}
	return e
}

// Get returns the key's value, or [ErrNotFound].
func (kv *KV) Get(ctx context.Context, key string) (*KVEntry, error) {
	m, err := kv.s.GetKey(ctx, key)
	if err != nil {
		return nil, err
	}
	return entry(m, KVPut), nil
}

// Put sets the key's value, whatever it was, and returns its new seq.
func (kv *KV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	ack, err := kv.s.Set(ctx, value, WithKey(key))
	return ack.Seq, err
}

// Create sets the key's value only if the key does not exist, else the
// error is [ErrWrongLastSequence].
func (kv *KV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	ack, err := kv.s.Set(ctx, value, WithKey(key), WithPreviousSeq(0))
	return ack.Seq, err
}

// Update sets the key's value only if its current seq is last, else the
// error is [ErrWrongLastSequence].
func (kv *KV) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	ack, err := kv.s.Set(ctx, value, WithKey(key), WithPreviousSeq(last))
	return ack.Seq, err
}

// Delete removes the key; removing an absent key is not an error.
func (kv *KV) Delete(ctx context.Context, key string) error {
	_, err := kv.s.DeleteKey(ctx, key)
	return err
}

// Keys yields every key in byte order; see [Stream.Keys].
func (kv *KV) Keys(ctx context.Context) iter.Seq2[string, error] { return kv.s.Keys(ctx) }

// KVWatcher delivers a [KV.Watch].
type KVWatcher struct {
	m       *Mirror
	updates chan *KVEntry
	stopped chan struct{}
	stop    sync.Once
}

// Watch follows the store as JetStream's KeyValue.WatchAll does: its
// [KVWatcher.Updates] channel first delivers every current value, then a
// nil entry marking that the initial values are done, then every change
// as it happens. It is kept by a [Mirror], so it stays exact across
// dropped events, reconnects and worker restarts; after a full re-read it
// delivers just what differs. A consumer that does not keep up holds the
// mirror back and makes it catch up later, never loses a change's end
// result. Entries arrive until ctx ends or [KVWatcher.Stop].
func (kv *KV) Watch(ctx context.Context) (*KVWatcher, error) {
	w := &KVWatcher{updates: make(chan *KVEntry, 256), stopped: make(chan struct{})}
	send := func(e *KVEntry) {
		select {
		case w.updates <- e:
		case <-w.stopped:
		}
	}
	m, err := kv.s.Mirror(ctx,
		WithOnUpdate(func(u Update) {
			switch {
			case u.Msg.Key == "":
			case u.Op == subjects.OpSet:
				send(entry(u.Msg, KVPut))
			case u.Op == subjects.OpDelete:
				send(entry(u.Msg, KVDelete))
			}
		}),
		func(o *mirrorOptions) { o.onReady = func() { send(nil) } },
	)
	if err != nil {
		return nil, err
	}
	w.m = m
	go func() {
		select {
		case <-m.Done():
		case <-w.stopped:
		}
		m.Close()
		close(w.updates)
	}()
	return w, nil
}

// Updates returns the channel of entries; it is closed when the watch
// ends.
func (w *KVWatcher) Updates() <-chan *KVEntry { return w.updates }

// Stop ends the watch.
func (w *KVWatcher) Stop() error {
	w.stop.Do(func() { close(w.stopped) })
	return nil
}
