package subjects

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// DefaultPrefix is the first part of every subject unless the worker is
// configured with another.
const DefaultPrefix = "persist"

// MaxPrefixLen bounds the subject prefix so that a full subject stays well
// inside what NATS servers accept.
const MaxPrefixLen = 64

// Operations, the <op> token of a request subject (PROTOCOL.md section 4,
// and [OpLocate], an extension the README documents).
const (
	OpSet       = "set"
	OpSetMany   = "setmany"
	OpGet       = "get"
	OpGetAll    = "getall"
	OpDelete    = "delete"
	OpConfig    = "config"
	OpInventory = "inventory"
	OpKeys      = "keys"
	OpList      = "list"
	OpDestroy   = "destroy"
	OpChanges   = "changes"
	// OpLocate answers which worker serves a stream ([Location]), without
	// opening or creating it: not in PROTOCOL.md, an extension.
	OpLocate = "locate"
)

// Ops lists every operation, one service endpoint each.
var Ops = []string{OpSet, OpSetMany, OpGet, OpGetAll, OpDelete, OpConfig, OpInventory, OpKeys, OpList, OpDestroy, OpChanges, OpLocate}

// ErrUnknownSubject is returned by [ParseAPI] and [ParseEvent] for a subject
// that is not a request or event subject of the given prefix at all, as
// opposed to one that names an invalid stream ([ErrInvalidName]).
var ErrUnknownSubject = errors.New("not a persist subject")

// ValidOp reports whether op is one of [Ops].
func ValidOp(op string) bool {
	return slices.Contains(Ops, op)
}

// ValidatePrefix reports whether prefix can start the worker's subjects: one
// or more NATS tokens of [A-Za-z0-9_-] joined by '.', at most [MaxPrefixLen]
// bytes. Wildcards, spaces and empty tokens are refused, since the worker
// subscribes to <prefix>.api.> and must match only its own subjects.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return errors.New("empty subject prefix")
	}
	if len(prefix) > MaxPrefixLen {
		return fmt.Errorf("subject prefix of %d bytes, more than %d", len(prefix), MaxPrefixLen)
	}
	for tok := range strings.SplitSeq(prefix, ".") {
		if tok == "" {
			return fmt.Errorf("subject prefix %s has an empty token", quote(prefix))
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; !plain[c] || c == '=' {
				return fmt.Errorf("subject prefix %s: byte %q not allowed", quote(prefix), c)
			}
		}
	}
	return nil
}

// APISubject returns the subject of a request for operation op on stream:
// <prefix>.api.<op>.<stream>.
func APISubject(prefix, op, stream string) string {
	return prefix + ".api." + op + "." + stream
}

// EventSubject returns the subject of stream's change events:
// <prefix>.ev.<stream>.
func EventSubject(prefix, stream string) string {
	return prefix + ".ev." + stream
}

// ParseAPI splits a request subject into its operation and stream. The error
// wraps [ErrInvalidName] when the subject is a request of a known operation
// whose stream part is missing or invalid (a 400 invalid_stream); op is
// still returned then, so the answer can be counted against its endpoint.
// The error wraps [ErrUnknownSubject] when subject is not a request subject
// of prefix at all.
func ParseAPI(prefix, subject string) (op, stream string, err error) {
	rest, ok := cutPrefix(subject, prefix, ".api.")
	if !ok {
		return "", "", fmt.Errorf("%w: %s", ErrUnknownSubject, quote(subject))
	}
	return parseOpStream(subject, rest)
}

// parseOpStream reads the <op>.<stream> that follows ".api." in subject,
// with the errors of [ParseAPI].
func parseOpStream(subject, rest string) (op, stream string, err error) {
	op, stream, _ = strings.Cut(rest, ".")
	if !ValidOp(op) {
		return "", "", fmt.Errorf("%w: %s: unknown operation %s", ErrUnknownSubject, quote(subject), quote(op))
	}
	if err := ValidateName(stream); err != nil {
		return op, "", err
	}
	return op, stream, nil
}

// ParseEvent returns the stream of an event subject. The error wraps
// [ErrInvalidName] when the stream part is missing or invalid and
// [ErrUnknownSubject] when it is not an event subject of prefix.
func ParseEvent(prefix, subject string) (stream string, err error) {
	if rest, ok := cutPrefix(subject, prefix, ".ev"); ok && rest == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	stream, ok := cutPrefix(subject, prefix, ".ev.")
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrUnknownSubject, quote(subject))
	}
	if err := ValidateName(stream); err != nil {
		return "", err
	}
	return stream, nil
}

// cutPrefix cuts prefix and then kind off subject without building the
// joined string, since it runs for every request. An empty prefix matches
// nothing: it is never a valid configuration.
func cutPrefix(subject, prefix, kind string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok || prefix == "" {
		return "", false
	}
	return strings.CutPrefix(rest, kind)
}
