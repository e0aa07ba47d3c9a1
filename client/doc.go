// Package client is a Go client of the Persist wire protocol: durable,
// SQLite-backed message streams served over NATS by a persist worker.
//
// It speaks only the protocol, over an existing [nats.Conn]. [New] makes a
// [Client]; [Client.Stream] names one stream ([StreamName] builds a name
// from arbitrary strings), whose methods are the protocol's operations:
//
//   - [Stream.Set] and [Stream.SetMany] append messages (keys, optimistic
//     concurrency with [WithPreviousSeq], deduplication with [WithMsgID],
//     per-message TTL with [WithTTL], user headers with [WithHeader]);
//   - [Stream.Get], [Stream.GetKey] read one message, [Stream.GetAll]
//     iterates over a range, reading page after page, and
//     [Stream.GetAllPage] reads one page with the revision it was read at;
//   - [Stream.DeleteSeq], [Stream.DeleteSeqs], [Stream.DeleteThrough],
//     [Stream.DeleteKey] and [Stream.DeleteAll] remove messages;
//   - [Stream.Config], [Stream.UpdateConfig], [Stream.Inventory],
//     [Stream.Keys] and [Stream.Destroy] manage the stream, [Client.List]
//     iterates over stream names, [Client.Locate] tells which worker
//     serves a stream (an extension of the protocol), and
//     [Client.Workers] lists the running workers and the partitions each
//     serves now, from their micro stats (a permission a client's user
//     may not have);
//   - [Stream.Changes] reads what changed after a revision.
//
// Events: [Client.Watch] follows the events of one stream or of a
// wildcard pattern ("acme.>"), marking an event that follows missed ones
// with a [Gap]. [Stream.Mirror] keeps a live in-memory copy of a stream
// by the protocol's recipe and keeps it exact after dropped events,
// reconnects and worker restarts. [Client.KV] is a stream seen as a
// key-value store in the shape of JetStream's KeyValue, with a
// [KV.Watch] that delivers the current values, a marker, then changes.
//
// Errors. An error reply of the worker is returned as an *[Error] (the
// protocol's code, reason and description), so errors.Is(err,
// client.ErrWrongLastSequence) and friends tell the cases apart. When no
// worker listens, the error wraps both [ErrNoWorker] and
// [nats.ErrNoResponders]. [IsRetryable] tells a failure worth retrying
// (429 overloaded or rate_limited, 503 unavailable, no worker, a timeout)
// from one that is final.
//
// Retries. Every operation but delete and destroy is retried after a
// retryable failure, with backoff and jitter, within the caller's context
// (see [Retry]). A write gets a random msg id unless it has one
// ([NewMsgID]; opt out with [WithoutMsgIDs]), and all its attempts carry
// the same id, so a write whose reply was lost is not stored twice: the
// retry is answered with the first write's seq and Ack.Duplicate.
//
// Checks before sending. A key, message id and user headers of a
// [Stream.Set] travel as NATS header values, which NATS clients trim of
// white space at both ends and cannot carry line breaks in. So that
// nothing is changed in transit (a key " padded " would be stored as
// "padded"), the client refuses such values before sending, with an error
// wrapping [ErrInvalidHeader]. Stream names, batch sizes ([MaxSetMany],
// [MaxDeleteSeqs]) and the NATS server's max payload ([ErrTooLarge]) are
// checked too.
//
// A reply is untrusted input: a malformed one is an error wrapping
// [ErrBadReply], never a panic or an endless read.
package client
