package client

import (
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// ErrInvalidHeader is wrapped by the error of a [Stream.Set] that the
// client refuses before sending, because NATS headers would not carry it
// as given or the worker would refuse it: a key the protocol does not
// allow, a header value that begins or ends with white space or holds a
// line break (NATS clients trim the one and turn the other into spaces, so
// a key " padded " would silently be stored as "padded"), an empty value
// of a request header, a header name the worker refuses, or a negative
// TTL.
var ErrInvalidHeader = errors.New("client: cannot send header")

// checkHeader reports whether every header of a set survives NATS as it
// is and is one the worker takes.
func checkHeader(h nats.Header) error {
	for name, vals := range h {
		kind := subjects.ClassifyHeader(name)
		if kind == subjects.HeaderBad {
			return fmt.Errorf("%w: name %s is not allowed on a write", ErrInvalidHeader, strconv.Quote(name))
		}
		if kind == subjects.HeaderRequest && len(vals) != 1 {
			return fmt.Errorf("%w: %s needs exactly one value, not %d", ErrInvalidHeader, name, len(vals))
		}
		for _, v := range vals {
			if err := checkValue(name, v); err != nil {
				return err
			}
		}
		if kind == subjects.HeaderRequest && vals[0] == "" {
			return fmt.Errorf("%w: %s is empty", ErrInvalidHeader, name)
		}
		if name == subjects.HeaderKey {
			if err := subjects.ValidateKey(vals[0]); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidHeader, err)
			}
		}
	}
	return nil
}

// checkValue reports whether a header value arrives as it is sent.
func checkValue(name, v string) error {
	switch {
	case strings.ContainsAny(v, "\r\n"):
		return fmt.Errorf("%w: %s value %s has a line break", ErrInvalidHeader, name, quoteShort(v))
	case textproto.TrimString(v) != v:
		return fmt.Errorf("%w: %s value %s begins or ends with white space", ErrInvalidHeader, name, quoteShort(v))
	}
	return nil
}

// quoteShort quotes a value for an error message, shortened.
func quoteShort(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "…"
	}
	return strconv.Quote(s)
}
