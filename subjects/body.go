package subjects

import "fmt"

// The JSON bodies of requests, replies and events (PROTOCOL.md sections 4
// and 5). The worker decodes requests strictly (unknown fields, fields in
// another letter case, duplicates and nulls are a 400) and a client
// encodes them with these types, so omitted fields are the protocol's
// defaults.

// GetRequest is the body of get: exactly one of Seq and Key.
type GetRequest struct {
	Seq *uint64 `json:"seq,omitempty"`
	Key *string `json:"key,omitempty"`
}

// Validate reports whether g asks for exactly one message.
func (g GetRequest) Validate() error {
	switch {
	case (g.Seq == nil) == (g.Key == nil):
		return ErrBadRequest.WithDescription(`get needs exactly one of "seq" and "key"`)
	case g.Key != nil:
		if err := ValidateKey(*g.Key); err != nil {
			return ErrBadRequest.WithDescription(err.Error())
		}
	}
	return nil
}

// GetAllRequest is the body of getall; zero fields take the defaults.
type GetAllRequest struct {
	StartSeq  uint64 `json:"start_seq,omitempty"`
	EndSeq    uint64 `json:"end_seq,omitempty"` // inclusive
	StartTime int64  `json:"start_time,omitempty"`
	MaxMsgs   uint64 `json:"max_msgs,omitempty"`
	MaxBytes  uint64 `json:"max_bytes,omitempty"`
}

// PageBounds returns the bounds of a getall or changes page asked for as
// maxMsgs and maxBytes (0: the default), defaulted and capped.
func PageBounds(maxMsgs, maxBytes uint64) (msgs int, bytes int64) {
	msgs, bytes = DefaultPageMsgs, DefaultPageBytes
	if maxMsgs > 0 {
		msgs = int(min(maxMsgs, MaxPageMsgs))
	}
	if maxBytes > 0 {
		bytes = int64(min(maxBytes, MaxPageBytes))
	}
	return msgs, bytes
}

// DeleteRequest is the body of delete: exactly one field.
type DeleteRequest struct {
	Seq     *uint64   `json:"seq,omitempty"`
	Seqs    *[]uint64 `json:"seqs,omitempty"`
	LastSeq *uint64   `json:"last_seq,omitempty"`
	Key     *string   `json:"key,omitempty"`
	All     *bool     `json:"all,omitempty"`
}

// Validate reports whether d names exactly one thing to delete, within
// the bounds.
func (d DeleteRequest) Validate() error {
	n := 0
	for _, set := range []bool{d.Seq != nil, d.Seqs != nil, d.LastSeq != nil, d.Key != nil, d.All != nil} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return ErrBadRequest.WithDescription(`delete needs exactly one of "seq", "seqs", "last_seq", "key" and "all"`)
	case d.Seqs != nil && len(*d.Seqs) > MaxDeleteSeqs:
		return ErrBadRequest.WithDescription(fmt.Sprintf(`"seqs" has more than %d seqs`, MaxDeleteSeqs))
	case d.All != nil && !*d.All:
		return ErrBadRequest.WithDescription(`"all" must be true`)
	case d.Key != nil:
		if err := ValidateKey(*d.Key); err != nil {
			return ErrBadRequest.WithDescription(err.Error())
		}
	}
	return nil
}

// PageRequest is the body of keys and list.
type PageRequest struct {
	After string `json:"after,omitempty"`
	Limit uint64 `json:"limit,omitempty"`
}

// PageLimit is the page size asked for, defaulted and capped.
func (p PageRequest) PageLimit() int {
	if p.Limit == 0 {
		return DefaultLimit
	}
	return int(min(p.Limit, MaxLimit))
}

// ChangesRequest is the body of changes.
type ChangesRequest struct {
	AfterRevision uint64 `json:"after_revision,omitempty"`
	MaxMsgs       uint64 `json:"max_msgs,omitempty"`
	MaxBytes      uint64 `json:"max_bytes,omitempty"`
}

// SetManyItem is one element of a setmany body. Data must be present (an
// empty payload is "").
type SetManyItem struct {
	Data        *[]byte             `json:"data"`
	Key         *string             `json:"key,omitempty"`
	Headers     map[string][]string `json:"headers,omitempty"`
	MsgID       *string             `json:"msg_id,omitempty"`
	TTL         *int64              `json:"ttl,omitempty"` // milliseconds, positive
	PreviousSeq *uint64             `json:"previous_seq,omitempty"`
}

// SetReply is the reply to set, and a setmany entry of a written item.
type SetReply struct {
	Seq       uint64 `json:"seq"`
	Time      int64  `json:"time"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// ErrorReply is the body of an error reply, and a setmany entry of a
// refused item.
type ErrorReply struct {
	Error *Error `json:"error"`
}

// SetManyEntry is one entry of a setmany reply as a client decodes it:
// Error is set for a refused item, the SetReply fields otherwise.
type SetManyEntry struct {
	SetReply
	Error *Error `json:"error,omitempty"`
}

// CountReply is the reply to delete.
type CountReply struct {
	Count int64 `json:"count"`
}

// OKReply is the reply to destroy.
type OKReply struct {
	OK bool `json:"ok"`
}

// Inventory is the reply to inventory.
type Inventory struct {
	Count    int64          `json:"count"`
	Bytes    int64          `json:"bytes"`
	FirstSeq uint64         `json:"first_seq"` // 0 when empty
	LastSeq  uint64         `json:"last_seq"`  // highest seq ever assigned
	Revision uint64         `json:"revision"`
	Limits   map[string]any `json:"limits"` // the config fields that differ from the defaults
}

// KeysReply is the reply to keys.
type KeysReply struct {
	Keys []string `json:"keys"`
	More bool     `json:"more"`
}

// Location is the reply to locate: the worker that serves Stream, or
// would serve it (locate neither opens nor creates a stream). Worker is
// its micro instance id and Name its service name, as in nats micro info
// <name> <worker>. Partition and PartitionCount are set by a partitioned
// worker only: the stream's partition ([Partition]) and the number of
// partitions.
type Location struct {
	Stream         string `json:"stream"`
	Worker         string `json:"worker"`
	Name           string `json:"name"`
	Partition      *int   `json:"partition,omitempty"`
	PartitionCount int    `json:"partition_count,omitempty"`
}

// ListReply is the reply to list.
type ListReply struct {
	Streams []string `json:"streams"`
	More    bool     `json:"more"`
}

// DeleteEvent is the body of a delete event, and of a delete change of a
// changes answer, where Keys names the keys of the keyed messages it
// removed.
type DeleteEvent struct {
	Ranges [][2]uint64 `json:"ranges"`
	Keys   []string    `json:"keys,omitempty"`
}
