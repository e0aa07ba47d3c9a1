package client

import "encoding/json"

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

// Inventory summarises a stream.
type Inventory struct {
	Count    int64          `json:"count"`
	Bytes    int64          `json:"bytes"`
	FirstSeq uint64         `json:"first_seq"` // 0 when empty
	LastSeq  uint64         `json:"last_seq"`  // highest seq ever assigned
	Revision uint64         `json:"revision"`
	Limits   map[string]any `json:"limits"` // the configuration fields that differ from the defaults
}
