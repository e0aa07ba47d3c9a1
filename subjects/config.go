package subjects

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Values of [Config.Storage].
const (
	StorageFile   = "file"
	StorageMemory = "memory"
)

// Values of [Config.DiscardPolicy].
const (
	DiscardOld = "old"
	DiscardNew = "new"
)

// Values of [Config.Compression].
const (
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// MemoryStreamMaxBytes caps the message bytes of a memory stream whatever
// its max_bytes says.
const MemoryStreamMaxBytes = 64 << 20

// Bounds on configuration values that the protocol leaves open. Durations
// are capped so that a time plus a duration never overflows; the description
// is capped because it is stored with every stream and sent in every config
// reply and event.
const (
	MaxDurationMs = 1 << 50 // about 35,000 years
	MaxDescBytes  = 64 << 10
)

// Config is a stream's configuration, exactly the fields of the protocol's
// config table (PROTOCOL.md section 4, config). Durations are
// milliseconds; -1 means unlimited.
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

// ConfigPatch is a change to a stream's configuration as a client sends it:
// nil fields are left as they are. Desc "null" clears the description.
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
	Desc                 json.RawMessage `json:"desc,omitempty"`
}

// DefaultConfig returns the configuration of the protocol's defaults.
func DefaultConfig() Config {
	return Config{
		MaxMsgs:              -1,
		MaxBytes:             -1,
		MaxAge:               0,
		MaxMsgSize:           -1,
		MaxMsgsPerSecond:     -1,
		MaxBytesPerSecond:    -1,
		DiscardPolicy:        DiscardOld,
		AllowMsgTTL:          false,
		DuplicateWindow:      120000,
		Sync:                 false,
		Storage:              StorageFile,
		Compression:          CompressionZstd,
		CompressionThreshold: 1024,
	}
}

// configError is a bad_request error describing a bad configuration.
func configError(format string, args ...any) *Error {
	return ErrBadRequest.WithDescription(fmt.Sprintf(format, args...))
}

// Validate reports whether c is a usable configuration: nil, or an
// [ErrBadRequest] that says what is wrong.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max_msgs", c.MaxMsgs},
		{"max_bytes", c.MaxBytes},
		{"max_msg_size", c.MaxMsgSize},
		{"max_msgs_per_second", c.MaxMsgsPerSecond},
		{"max_bytes_per_second", c.MaxBytesPerSecond},
	} {
		if f.v != -1 && f.v <= 0 {
			return configError("%s must be -1 or positive", f.name)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max_age", c.MaxAge},
		{"duplicate_window", c.DuplicateWindow},
	} {
		if f.v < 0 || f.v > MaxDurationMs {
			return configError("%s must be between 0 and %d milliseconds", f.name, int64(MaxDurationMs))
		}
	}
	if c.CompressionThreshold < 0 {
		return configError("compression_threshold must not be negative")
	}
	if c.DiscardPolicy != DiscardOld && c.DiscardPolicy != DiscardNew {
		return configError("discard_policy must be %q or %q", DiscardOld, DiscardNew)
	}
	if c.Storage != StorageFile && c.Storage != StorageMemory {
		return configError("storage must be %q or %q", StorageFile, StorageMemory)
	}
	if c.Compression != CompressionZstd && c.Compression != CompressionNone {
		return configError("compression must be %q or %q", CompressionZstd, CompressionNone)
	}
	if c.Desc != nil {
		if len(c.Desc) > MaxDescBytes {
			return configError("desc is larger than %d bytes", MaxDescBytes)
		}
		if !json.Valid(c.Desc) {
			return configError("desc is not valid JSON")
		}
	}
	return nil
}

// ParseConfigPatch applies body, a JSON object holding some of the config
// fields, onto base and returns the validated result. Field names must be
// spelled exactly (encoding/json alone would accept any letter case); an
// unknown field, a null (except for desc, where it clears the
// description), a value of the wrong type or trailing data is an
// [ErrBadRequest], and base is returned unchanged.
func ParseConfigPatch(base Config, body []byte) (Config, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return base, configError("config must be a JSON object")
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		return base, configError("config: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return base, configError("config: trailing data after the object")
	}
	c := base
	for name, raw := range fields {
		if name != "desc" && bytes.Equal(raw, []byte("null")) {
			return base, configError("%s must not be null", name)
		}
		var dst any
		switch name {
		case "max_msgs":
			dst = &c.MaxMsgs
		case "max_bytes":
			dst = &c.MaxBytes
		case "max_age":
			dst = &c.MaxAge
		case "max_msg_size":
			dst = &c.MaxMsgSize
		case "max_msgs_per_second":
			dst = &c.MaxMsgsPerSecond
		case "max_bytes_per_second":
			dst = &c.MaxBytesPerSecond
		case "discard_policy":
			dst = &c.DiscardPolicy
		case "allow_msg_ttl":
			dst = &c.AllowMsgTTL
		case "duplicate_window":
			dst = &c.DuplicateWindow
		case "sync":
			dst = &c.Sync
		case "storage":
			dst = &c.Storage
		case "compression":
			dst = &c.Compression
		case "compression_threshold":
			dst = &c.CompressionThreshold
		case "desc":
			c.Desc = CompactJSON(raw)
			continue
		default:
			return base, configError("unknown config field %q", name)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return base, configError("%s: %v", name, err)
		}
	}
	if err := c.Validate(); err != nil {
		return base, err
	}
	return c, nil
}

// CompactJSON returns raw without insignificant white space, so that equal
// descriptions compare equal; null becomes nil, and raw that is not JSON
// is returned as it is.
func CompactJSON(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	if b.String() == "null" {
		return nil
	}
	return json.RawMessage(b.Bytes())
}

// Equal reports whether two configurations are the same, descriptions
// compared as compact JSON.
func (c Config) Equal(o Config) bool {
	c.Desc, o.Desc = CompactJSON(c.Desc), CompactJSON(o.Desc)
	a, err1 := json.Marshal(c)
	b, err2 := json.Marshal(o)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// NonDefault returns the fields of c that differ from [DefaultConfig], keyed
// by their JSON names: the "limits" of an inventory.
func (c Config) NonDefault() map[string]any {
	d := DefaultConfig()
	m := map[string]any{}
	add := func(name string, v, def any) {
		if v != def {
			m[name] = v
		}
	}
	add("max_msgs", c.MaxMsgs, d.MaxMsgs)
	add("max_bytes", c.MaxBytes, d.MaxBytes)
	add("max_age", c.MaxAge, d.MaxAge)
	add("max_msg_size", c.MaxMsgSize, d.MaxMsgSize)
	add("max_msgs_per_second", c.MaxMsgsPerSecond, d.MaxMsgsPerSecond)
	add("max_bytes_per_second", c.MaxBytesPerSecond, d.MaxBytesPerSecond)
	add("discard_policy", c.DiscardPolicy, d.DiscardPolicy)
	add("allow_msg_ttl", c.AllowMsgTTL, d.AllowMsgTTL)
	add("duplicate_window", c.DuplicateWindow, d.DuplicateWindow)
	add("sync", c.Sync, d.Sync)
	add("storage", c.Storage, d.Storage)
	add("compression", c.Compression, d.Compression)
	add("compression_threshold", c.CompressionThreshold, d.CompressionThreshold)
	if desc := CompactJSON(c.Desc); desc != nil {
		m["desc"] = desc
	}
	return m
}
