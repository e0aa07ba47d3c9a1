package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"sync"

	"github.com/nats-persist/persist/subjects"
)

// The stored config is the JSON object in the meta row's config column.
// Its format is versioned by the field "version" (storedConfigVersion
// when absent) and read tolerantly, unlike a config request: a file may
// have been written by a newer version of this code (a rollback, or a
// mixed-version handover), and a config is not damage because this
// version does not know all of it.
//
//   - A field this code does not know is ignored, and kept: a later
//     config change writes it back unchanged, so the version that wrote it
//     finds it again. "version" is such a field too.
//   - A known field with a value this code cannot use (wrong type, null,
//     out of range) reads as its default, as if it were absent.
//   - Only a value that is not a JSON object has no sensible reading: that
//     is damage (ErrCorrupt).
//
// Open logs the fields it ignored or replaced, with the path, once per
// process and path.
//
// A later version that adds a field bumps "version" and adds only fields
// whose absence means the behaviour of the versions before (so that an
// older reader, which ignores it, does what the stream did before the
// field was set); a changed meaning takes a new field name. This version
// writes exactly the fields of [Config] and no "version" (version 1), so
// that releases before tolerant reading, which refuse unknown fields, can
// still read what it writes. The schema version (PRAGMA user_version) is
// separate: a file with a newer schema is refused as damaged, since this
// code cannot know what its tables mean.
const storedConfigVersion = 1

// configWarned holds the paths whose stored config has been logged for
// fields this version ignores, so that a stream closed and opened again
// and again (the broker's idle timeout) is logged once per process.
var configWarned sync.Map

// onceFor reports whether key is new to m, and adds it.
func onceFor(m *sync.Map, key string) bool {
	_, seen := m.LoadOrStore(key, struct{}{})
	return !seen
}

// defaultConfigJSON is the config a stream created with the defaults
// stores; most streams have it, and it needs no parsing.
var defaultConfigJSON = func() string {
	b, err := json.Marshal(subjects.DefaultConfig())
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// storedConfig is a parsed stored config.
type storedConfig struct {
	cfg Config
	// extra holds the fields this code does not know, written back by
	// encodeStoredConfig.
	extra map[string]json.RawMessage
	// unknown and bad name the fields ignored and those read as their
	// default, sorted, for the log.
	unknown, bad []string
	// version is the format version of the writer, for the log.
	version int64
}

// knownConfigField reports whether name is a field of [Config].
func knownConfigField(name string) bool {
	switch name {
	case "max_msgs", "max_bytes", "max_age", "max_msg_size", "max_msgs_per_second",
		"max_bytes_per_second", "discard_policy", "allow_msg_ttl", "duplicate_window",
		"sync", "storage", "compression", "compression_threshold", "desc":
		return true
	}
	return false
}

// parseStoredConfig parses a stored config (see storedConfigVersion). It
// fails only on a value that is not a JSON object.
func parseStoredConfig(s string) (storedConfig, error) {
	if s == defaultConfigJSON {
		return storedConfig{cfg: subjects.DefaultConfig()}, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &fields); err != nil || fields == nil {
		return storedConfig{}, errors.New("stored config is not a JSON object")
	}
	sc := storedConfig{cfg: subjects.DefaultConfig(), version: storedConfigVersion}
	if raw, ok := fields["version"]; ok && json.Unmarshal(raw, &sc.version) != nil {
		sc.version = 0 // not a number: unknown
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		raw := fields[name]
		if !knownConfigField(name) {
			if sc.extra == nil {
				sc.extra = make(map[string]json.RawMessage)
			}
			sc.extra[name] = raw
			if name != "version" {
				sc.unknown = append(sc.unknown, name)
			}
			continue
		}
		// One field at a time through the request parser, so that a bad
		// value costs only its own field.
		patch, err := json.Marshal(map[string]json.RawMessage{name: raw})
		if err == nil {
			var c Config
			if c, err = subjects.ParseConfigPatch(sc.cfg, patch); err == nil {
				sc.cfg = c
				continue
			}
		}
		sc.bad = append(sc.bad, name)
	}
	return sc, nil
}

// encodeStoredConfig is the stored form of c, with the fields of extra
// that c does not have.
func encodeStoredConfig(c Config, extra map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil || len(extra) == 0 {
		return b, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	for name, raw := range extra {
		if _, ok := fields[name]; !ok {
			fields[name] = raw
		}
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}
