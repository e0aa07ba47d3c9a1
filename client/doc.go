// Package client is a Go client of the Persist wire protocol: durable,
// SQLite-backed message streams served over NATS by a persist worker.
//
// It speaks only the protocol, over an existing [nats.Conn]. [New] makes a
// [Client]; [Client.Stream] names one stream, whose methods are the
// protocol's operations:
//
//   - [Stream.Set] and [Stream.SetMany] append messages (keys, optimistic
//     concurrency with [WithPreviousSeq], deduplication with [WithMsgID],
//     per-message TTL with [WithTTL]);
//   - [Stream.Get], [Stream.GetKey] read one message, [Stream.GetAll] reads
//     a range page by page and [Stream.GetAllPage] reads one page with the
//     revision it was read at;
//   - [Stream.DeleteSeq], [Stream.DeleteSeqs], [Stream.DeleteThrough],
//     [Stream.DeleteKey] and [Stream.DeleteAll] remove messages;
//   - [Stream.Config], [Stream.UpdateConfig], [Stream.Inventory],
//     [Stream.Keys] and [Stream.Destroy] manage the stream, [Client.List]
//     lists streams;
//   - [Stream.Watch] follows the stream's change events.
//
// An error reply of the worker is returned as a *[subjects.Error], so
// errors.Is(err, subjects.ErrNotFound) and friends tell the cases apart.
// When no worker listens, the error wraps both [ErrNoWorker] and
// [nats.ErrNoResponders].
//
// A key, message id and user headers of a [Stream.Set] travel as NATS
// header values, which NATS clients trim of white space at both ends and
// cannot carry line breaks in. So that nothing is changed in transit (a
// key " padded " would be stored as "padded"), the client refuses such
// values before sending, with an error wrapping [ErrInvalidHeader].
//
// A live mirror of a stream follows the protocol's recipe: call
// [Stream.Watch] first, read the stream with [Stream.GetAllPage] noting the
// first page's revision, then apply the events whose revision is above it.
package client
