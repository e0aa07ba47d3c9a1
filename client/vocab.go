package client

import "github.com/nats-persist/persist/subjects"

// The protocol's words, from its one vocabulary in package subjects.
type (
	// Config is a stream's configuration: exactly the fields of the
	// protocol's config table; durations are milliseconds, -1 means
	// unlimited.
	Config = subjects.Config
	// ConfigPatch is a change to a stream's configuration: nil fields are
	// left as they are; Desc "null" clears the description.
	ConfigPatch = subjects.ConfigPatch
	// Inventory summarises a stream: counts, seqs, revision and the
	// configuration fields that differ from the defaults.
	Inventory = subjects.Inventory
	// Ack is the worker's answer to a committed write; Duplicate says an
	// earlier write had the same msg id and nothing was written.
	Ack = subjects.SetReply
	// Location says which worker serves a stream (its micro instance id
	// and service name) and, from a partitioned worker, the stream's
	// partition and the number of partitions.
	Location = subjects.Location
)

// Bounds of the protocol the client checks before sending.
const (
	// MaxSetMany is the most items one [Stream.SetMany] call may carry.
	MaxSetMany = subjects.MaxSetMany
	// MaxDeleteSeqs is the most seqs one [Stream.DeleteSeqs] call may carry.
	MaxDeleteSeqs = subjects.MaxDeleteSeqs
	// MaxPageMsgs is the most messages a worker sends in one page; a page
	// that goes on beyond it is refused rather than buffered.
	MaxPageMsgs = subjects.MaxPageMsgs
)
