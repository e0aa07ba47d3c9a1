package subjects

import "strconv"

// Error is a protocol error: the code and reason of PROTOCOL.md section 2
// and a human description. The worker sends it as
// {"error":{"code":…,"reason":…,"description":…}} and a client decodes it
// back, so both sides compare errors with errors.Is against the sentinels
// below.
type Error struct {
	Code        int    `json:"code"`
	Reason      string `json:"reason"`
	Description string `json:"description"`
}

// The protocol's errors, one per reason.
var (
	// ErrBadRequest: malformed JSON, unknown field, bad header or option.
	ErrBadRequest = &Error{400, "bad_request", "bad request"}
	// ErrInvalidStream: the subject does not name a valid stream.
	ErrInvalidStream = &Error{400, "invalid_stream", "invalid stream name"}
	// ErrTTLDisabled: Persist-TTL on a stream without allow_msg_ttl.
	ErrTTLDisabled = &Error{400, "ttl_disabled", "message TTL is not allowed on this stream"}
	// ErrNotFound: no such message, or no such stream for get and destroy.
	ErrNotFound = &Error{404, "not_found", "not found"}
	// ErrWrongLastSequence: Persist-Previous-Seq does not match.
	ErrWrongLastSequence = &Error{409, "wrong_last_sequence", "wrong last sequence"}
	// ErrRevisionGone: changes after that revision are no longer kept (or
	// the revision is above the stream's); re-read with getall.
	ErrRevisionGone = &Error{410, "revision_gone", "the changes after that revision are no longer kept"}
	// ErrMsgTooLarge: larger than max_msg_size or max_bytes.
	ErrMsgTooLarge = &Error{413, "msg_too_large", "message too large"}
	// ErrRateLimited: the stream's write rate limit is exceeded.
	ErrRateLimited = &Error{429, "rate_limited", "rate limited"}
	// ErrTooManyStreams: the namespace is at its stream quota.
	ErrTooManyStreams = &Error{429, "too_many_streams", "too many streams in this namespace"}
	// ErrOverloaded: back-pressure; too many requests are waiting for the
	// stream or the worker, or the worker is out of room for open streams.
	// Retry after a short delay.
	ErrOverloaded = &Error{429, "overloaded", "overloaded"}
	// ErrLimitReached: discard policy new and a limit would be exceeded, or
	// the memory-stream quota is full.
	ErrLimitReached = &Error{507, "limit_reached", "limit reached"}
	// ErrStorageFull: the disk holding the stream is full; nothing was
	// written.
	ErrStorageFull = &Error{507, "storage_full", "storage full"}
	// ErrUnavailable: the worker is stopping, or the stream's file is held
	// by another process. Retry elsewhere or later.
	ErrUnavailable = &Error{503, "unavailable", "unavailable"}
	// ErrDamaged: the stream's file is damaged; an operator must repair or
	// remove it.
	ErrDamaged = &Error{503, "damaged", "the stream's file is damaged"}
	// ErrInternal: anything else; the details go to the log.
	ErrInternal = &Error{500, "internal", "internal error"}
)

// Error returns the description followed by the reason and code, such as
// "not found (not_found, 404)".
func (e *Error) Error() string {
	desc := e.Description
	if desc == "" {
		desc = e.Reason
	}
	return desc + " (" + e.Reason + ", " + strconv.Itoa(e.Code) + ")"
}

// Is reports whether target is an *Error with the same reason, so a decoded
// reply with its own description still matches its sentinel.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && e != nil && t != nil && e.Reason == t.Reason
}

// WithDescription returns a copy of e with another description, leaving the
// sentinel untouched.
func (e *Error) WithDescription(desc string) *Error {
	c := *e
	c.Description = desc
	return &c
}
