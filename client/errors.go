package client

import (
	"context"
	"errors"
	"net"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// The worker's errors (PROTOCOL.md section 2), re-exported so that callers
// need only this package: errors.Is(err, client.ErrWrongLastSequence)
// matches an error reply with that reason whatever its description. An
// error reply is returned as a *[subjects.Error] (aliased [Error]) carrying
// the code, the reason and the worker's description.
var (
	ErrBadRequest        = subjects.ErrBadRequest        // 400 bad_request
	ErrInvalidStream     = subjects.ErrInvalidStream     // 400 invalid_stream
	ErrTTLDisabled       = subjects.ErrTTLDisabled       // 400 ttl_disabled
	ErrNotFound          = subjects.ErrNotFound          // 404 not_found
	ErrWrongLastSequence = subjects.ErrWrongLastSequence // 409 wrong_last_sequence
	ErrRevisionGone      = subjects.ErrRevisionGone      // 410 revision_gone
	ErrMsgTooLarge       = subjects.ErrMsgTooLarge       // 413 msg_too_large
	ErrRateLimited       = subjects.ErrRateLimited       // 429 rate_limited
	ErrTooManyStreams    = subjects.ErrTooManyStreams    // 429 too_many_streams
	ErrOverloaded        = subjects.ErrOverloaded        // 429 overloaded
	ErrLimitReached      = subjects.ErrLimitReached      // 507 limit_reached
	ErrStorageFull       = subjects.ErrStorageFull       // 507 storage_full
	ErrUnavailable       = subjects.ErrUnavailable       // 503 unavailable
	ErrDamaged           = subjects.ErrDamaged           // 503 damaged
	ErrInternal          = subjects.ErrInternal          // 500 internal
)

// Error is the type of every error reply of the worker: the code and
// reason of PROTOCOL.md section 2 and the worker's description.
type Error = subjects.Error

// Errors of the client itself.
var (
	// ErrNoWorker is wrapped by the error of a request that no persist
	// worker answered because none listens on its subject (a wrong
	// prefix, or the worker is down). It is retryable.
	ErrNoWorker = errors.New("client: no persist worker is listening")
	// ErrBadReply is wrapped by the error of a reply that does not follow
	// the protocol (a body that does not decode, a header out of range).
	ErrBadReply = errors.New("client: malformed reply")
	// ErrTooLarge is wrapped by the error of a request larger than the
	// NATS server's max payload, refused before sending.
	ErrTooLarge = errors.New("client: request larger than the server's max payload")
)

// IsRetryable reports whether err is worth trying again unchanged after a
// short delay: the worker shed load (429 overloaded) or a write rate
// limit was hit (429 rate_limited: the limit is per second, so a later
// attempt can pass), the worker is stopping or the stream's file is busy
// (503 unavailable), no worker answered (no responders), the request
// timed out, or the connection is reconnecting and could not take it. A
// failed reply changed nothing, so retrying one is always safe; a timeout
// may hide a write that happened, which is why writes carry a msg id when
// they are retried (see [Stream.Set]).
//
// Every other error is final: a 4xx other than those, 503 damaged (an
// operator must act), 507, 500, a closed connection, or a canceled
// context of the caller.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	var e *subjects.Error
	if errors.As(err, &e) {
		return e.Is(ErrOverloaded) || e.Is(ErrRateLimited) || e.Is(ErrUnavailable)
	}
	return errors.Is(err, ErrNoWorker) || isTimeout(err) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrReconnectBufExceeded)
}

// isTimeout reports whether err is a request that got no answer in time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}
