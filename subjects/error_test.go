package subjects

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// wireErrors is PROTOCOL.md section 2's table, row by row.
var wireErrors = []struct {
	err    *Error
	code   int
	reason string
}{
	{ErrBadRequest, 400, "bad_request"},
	{ErrInvalidStream, 400, "invalid_stream"},
	{ErrTTLDisabled, 400, "ttl_disabled"},
	{ErrNotFound, 404, "not_found"},
	{ErrWrongLastSequence, 409, "wrong_last_sequence"},
	{ErrMsgTooLarge, 413, "msg_too_large"},
	{ErrRateLimited, 429, "rate_limited"},
	{ErrTooManyStreams, 429, "too_many_streams"},
	{ErrLimitReached, 507, "limit_reached"},
	{ErrUnavailable, 503, "unavailable"},
	{ErrDamaged, 503, "damaged"},
	{ErrStorageFull, 507, "storage_full"},
	{ErrOverloaded, 429, "overloaded"},
	{ErrInternal, 500, "internal"},
}

func TestError_Table(t *testing.T) {
	for _, w := range wireErrors {
		t.Run(w.reason, func(t *testing.T) {
			if got, want := w.err.Code, w.code; got != want {
				t.Errorf("Code = %d, want %d", got, want)
			}
			if got, want := w.err.Reason, w.reason; got != want {
				t.Errorf("Reason = %q, want %q", got, want)
			}
			if w.err.Description == "" {
				t.Errorf("Description is empty")
			}
		})
	}
}

func TestError_Is(t *testing.T) {
	for _, a := range wireErrors {
		for _, b := range wireErrors {
			if got, want := errors.Is(a.err, b.err), a.reason == b.reason; got != want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", a.err, b.err, got, want)
			}
		}
	}
	t.Run("Described", func(t *testing.T) {
		err := ErrNotFound.WithDescription("no message with seq 7")
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("errors.Is(%v, ErrNotFound) = false", err)
		}
	})
	t.Run("Wrapped", func(t *testing.T) {
		err := fmt.Errorf("get acme: %w", ErrWrongLastSequence.WithDescription("x"))
		if !errors.Is(err, ErrWrongLastSequence) {
			t.Fatalf("errors.Is(%v, ErrWrongLastSequence) = false", err)
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != 409 {
			t.Fatalf("errors.As(%v) = %v", err, e)
		}
	})
	t.Run("Decoded", func(t *testing.T) {
		var body struct {
			Error *Error `json:"error"`
		}
		raw := `{"error":{"code":429,"reason":"rate_limited","description":"slow down"}}`
		if err := json.Unmarshal([]byte(raw), &body); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(body.Error, ErrRateLimited) || errors.Is(body.Error, ErrTooManyStreams) {
			t.Fatalf("decoded %v does not match by reason", body.Error)
		}
	})
	t.Run("OtherTypes", func(t *testing.T) {
		if errors.Is(ErrInternal, errors.New("internal")) {
			t.Fatal("errors.Is matched a plain error")
		}
		var nilErr *Error
		if ErrInternal.Is(nilErr) {
			t.Fatal("Is matched a nil *Error")
		}
	})
}

func TestError_WithDescription(t *testing.T) {
	before := *ErrNotFound
	err := ErrNotFound.WithDescription("no key \"k\"")
	if *ErrNotFound != before {
		t.Fatalf("WithDescription changed the sentinel to %+v", *ErrNotFound)
	}
	if got, want := *err, (Error{404, "not_found", "no key \"k\""}); got != want {
		t.Fatalf("WithDescription() = %+v, want %+v", got, want)
	}
}

func TestError_Error(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{ErrNotFound, "not found (not_found, 404)"},
		{ErrNotFound.WithDescription("no message 7"), "no message 7 (not_found, 404)"},
		{&Error{Code: 503, Reason: "unavailable"}, "unavailable (unavailable, 503)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestError_JSON(t *testing.T) {
	b, err := json.Marshal(ErrTooManyStreams.WithDescription("namespace acme has 10 streams"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"code":429,"reason":"too_many_streams","description":"namespace acme has 10 streams"}`; got != want {
		t.Fatalf("json.Marshal() = %s, want %s", got, want)
	}
}
