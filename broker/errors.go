package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// wireErrors is the one table from store errors to wire errors (PROTOCOL.md
// section 2). public says whether the store's message may be shown to the
// client; the others carry file paths or internals and keep the wire
// error's own description.
var wireErrors = []struct {
	err    error
	wire   *subjects.Error
	public bool
}{
	{store.ErrNotFound, subjects.ErrNotFound, true},
	{store.ErrWrongLastSequence, subjects.ErrWrongLastSequence, true},
	{store.ErrMsgTooLarge, subjects.ErrMsgTooLarge, true},
	{store.ErrRateLimited, subjects.ErrRateLimited, true},
	{store.ErrLimitReached, subjects.ErrLimitReached, true},
	{store.ErrTTLDisabled, subjects.ErrTTLDisabled, true},
	{store.ErrRevisionGone, subjects.ErrRevisionGone, false},
	{store.ErrInvalid, subjects.ErrBadRequest, true},
	{store.ErrCorrupt, subjects.ErrDamaged, false},
	{store.ErrStorageFull, subjects.ErrStorageFull, false},
	{store.ErrClosed, subjects.ErrUnavailable, false},
	{store.ErrLocked, subjects.ErrUnavailable.WithDescription("the stream's file is in use by another process"), false},
	{store.ErrTooManyOpen, subjects.ErrOverloaded.WithDescription("too many streams open in the worker"), false},
}

// wireError maps err, the answer to a request of op on stream, to the
// error sent to the client. An error that is already a wire error goes
// out as it is; anything unknown is logged with op and stream and
// answered 500 internal without details. A damaged file is logged once
// per stream (see damagedOnce).
func (b *Broker) wireError(op, stream string, err error) *subjects.Error {
	var we *subjects.Error
	if errors.As(err, &we) {
		return we
	}
	for _, m := range wireErrors {
		if errors.Is(err, m.err) {
			if m.public {
				// "store: invalid argument: max_msgs must be …" reads
				// "max_msgs must be …": the code already says the rest.
				desc := strings.TrimPrefix(err.Error(), "store: ")
				if d := strings.TrimPrefix(desc, strings.TrimPrefix(m.err.Error(), "store: ")+": "); d != "" {
					desc = d
				}
				return m.wire.WithDescription(desc)
			}
			if m.err == store.ErrCorrupt && b.damagedOnce(stream) {
				b.log.Error("damaged stream file: every request of the stream answers 503 damaged until it is repaired or removed",
					"stream", stream, "path", b.streamPath(stream), "op", op, "err", err)
			}
			return m.wire
		}
	}
	b.log.Error("internal error", "op", op, "stream", stream, "err", err)
	return subjects.ErrInternal
}

// damagedOnce reports whether stream was not known to be damaged yet, and
// marks it. The marks are as many as damaged files (found on disk, never
// made up by a request); a stream that opens again loses its mark.
func (b *Broker) damagedOnce(stream string) bool {
	_, seen := b.damaged.LoadOrStore(stream, struct{}{})
	return !seen
}

// streamPath is the path of stream's file.
func (b *Broker) streamPath(stream string) string {
	if stream == "" {
		return ""
	}
	return filepath.Join(b.opts.DataDir, subjects.Path(stream))
}

// badRequest is a 400 bad_request with a description for the client.
func badRequest(desc string) *subjects.Error {
	return subjects.ErrBadRequest.WithDescription(desc)
}

// headerSafe makes s fit in a header value: one line, bounded.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7F {
			return ' '
		}
		return r
	}, s)
	const maxLen = 512
	if len(s) > maxLen {
		s = strings.ToValidUTF8(s[:maxLen], "")
	}
	return strings.TrimSpace(s)
}

// jsonMarshal is json.Marshal without HTML escaping, so that replies show
// keys and descriptions as they are.
func jsonMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
