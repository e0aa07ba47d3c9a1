// Package store keeps one durable message stream in one SQLite file (or in
// memory), with every stream semantic of the Persist protocol: sequence
// numbers, keys, optimistic concurrency, message-id deduplication, TTL,
// limits, compression, revisions and change events, and tiered storage.
//
// A [Stream] is opened with [Open] and closed with [Stream.Close]. All of its
// methods are safe for concurrent use: one lock per stream owns its SQLite
// connection. Each committed change produces [Event] values, handed to
// [Options.Notify] in revision order right after the commit.
package store
