package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Bounds on configuration values that the protocol leaves open. Durations
// are capped so that a time plus a duration never overflows; the description
// is capped because it is stored with every stream and sent in every config
// reply and event.
const (
	maxDurationMs = 1 << 50 // about 35,000 years
	maxDescBytes  = 64 << 10
)

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

// Validate reports whether c is a usable configuration. The error wraps
// ErrInvalid and says what is wrong.
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
			return fmt.Errorf("%w: %s must be -1 or positive", ErrInvalid, f.name)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"max_age", c.MaxAge},
		{"duplicate_window", c.DuplicateWindow},
	} {
		if f.v < 0 || f.v > maxDurationMs {
			return fmt.Errorf("%w: %s must be between 0 and %d milliseconds", ErrInvalid, f.name, int64(maxDurationMs))
		}
	}
	if c.CompressionThreshold < 0 {
		return fmt.Errorf("%w: compression_threshold must not be negative", ErrInvalid)
	}
	if c.DiscardPolicy != DiscardOld && c.DiscardPolicy != DiscardNew {
		return fmt.Errorf("%w: discard_policy must be %q or %q", ErrInvalid, DiscardOld, DiscardNew)
	}
	if c.Storage != StorageFile && c.Storage != StorageMemory {
		return fmt.Errorf("%w: storage must be %q or %q", ErrInvalid, StorageFile, StorageMemory)
	}
	if c.Compression != CompressionZstd && c.Compression != CompressionNone {
		return fmt.Errorf("%w: compression must be %q or %q", ErrInvalid, CompressionZstd, CompressionNone)
	}
	if c.Desc != nil {
		if len(c.Desc) > maxDescBytes {
			return fmt.Errorf("%w: desc is larger than %d bytes", ErrInvalid, maxDescBytes)
		}
		if !json.Valid(c.Desc) {
			return fmt.Errorf("%w: desc is not valid JSON", ErrInvalid)
		}
	}
	return nil
}

// ParseConfigPatch applies body, a JSON object holding some of the config
// fields, onto base and returns the validated result. Field names must be
// spelled exactly (encoding/json alone would accept any letter case); an
// unknown field, a null (except for desc, where it clears the
// description), a value of the wrong type or trailing data is ErrInvalid.
func ParseConfigPatch(base Config, body []byte) (Config, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return base, fmt.Errorf("%w: config must be a JSON object", ErrInvalid)
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		return base, fmt.Errorf("%w: config: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return base, fmt.Errorf("%w: config: trailing data after the object", ErrInvalid)
	}
	c := base
	for name, raw := range fields {
		if name != "desc" && bytes.Equal(raw, []byte("null")) {
			return base, fmt.Errorf("%w: %s must not be null", ErrInvalid, name)
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
			c.Desc = compactJSON(raw)
			continue
		default:
			return base, fmt.Errorf("%w: unknown config field %q", ErrInvalid, name)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return base, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
		}
	}
	if err := c.Validate(); err != nil {
		return base, err
	}
	return c, nil
}

// compactJSON returns raw without insignificant white space, so that equal
// descriptions compare equal; null becomes nil.
func compactJSON(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	if b.String() == "null" {
		return nil
	}
	return json.RawMessage(b.Bytes())
}

// equal reports whether two configurations are the same.
func (c Config) equal(o Config) bool {
	c.Desc, o.Desc = compactJSON(c.Desc), compactJSON(o.Desc)
	a, err1 := json.Marshal(c)
	b, err2 := json.Marshal(o)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// NonDefault returns the fields of c that differ from [DefaultConfig], keyed
// by their JSON names.
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
	if desc := compactJSON(c.Desc); desc != nil {
		m["desc"] = desc
	}
	return m
}
