package client

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// DefaultTimeout bounds one request (one attempt of a retried one) whose
// context has no earlier deadline.
const DefaultTimeout = 5 * time.Second

// Headers of a worker's error reply, as nats.go micro writes them.
const (
	headerServiceError     = "Nats-Service-Error"
	headerServiceErrorCode = "Nats-Service-Error-Code"
)

// Retry says how often and how patiently a retryable failure (see
// [IsRetryable]) is tried again. Attempt n (from 1) waits a random time
// between 0 and min(Max, Min·2ⁿ) first ("full jitter"), so that many
// clients shed at once do not come back at once. The caller's context
// bounds the whole: a retry never outlives it.
type Retry struct {
	Attempts int           // tries in all, the first included; 1 turns retries off
	Min      time.Duration // base delay
	Max      time.Duration // longest delay
}

// DefaultRetry is the retry policy of a new [Client]: up to 5 tries over
// about 3 seconds at most.
var DefaultRetry = Retry{Attempts: 5, Min: 50 * time.Millisecond, Max: time.Second}

// Client talks to persist workers over one NATS connection. It is safe for
// concurrent use.
type Client struct {
	nc      *nats.Conn
	prefix  string
	timeout time.Duration
	retry   Retry
	noIDs   bool
	service string
}

// Option configures a [Client].
type Option func(*Client)

// WithPrefix sets the subject prefix the workers serve; the default is
// [subjects.DefaultPrefix].
func WithPrefix(prefix string) Option { return func(c *Client) { c.prefix = prefix } }

// WithTimeout sets how long one request may wait for its reply when its
// context has no earlier deadline; the default is [DefaultTimeout].
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithRetry sets the retry policy; the default is [DefaultRetry].
func WithRetry(r Retry) Option { return func(c *Client) { c.retry = r } }

// WithoutMsgIDs stops [Stream.Set] and [Stream.SetMany] from giving a
// write without a msg id one of its own. Such a write is then retried only
// after a failure that proves nothing was written (an error reply, no
// responders), never after a timeout.
func WithoutMsgIDs() Option { return func(c *Client) { c.noIDs = true } }

// New returns a client on nc.
func New(nc *nats.Conn, opts ...Option) *Client {
	c := &Client{nc: nc, prefix: subjects.DefaultPrefix, timeout: DefaultTimeout, retry: DefaultRetry, service: DefaultServiceName}
	for _, o := range opts {
		o(c)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	c.retry.Attempts = max(c.retry.Attempts, 1)
	if c.retry.Min <= 0 {
		c.retry.Min = DefaultRetry.Min
	}
	c.retry.Max = max(c.retry.Max, c.retry.Min)
	return c
}

// Conn returns the client's NATS connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// Prefix returns the subject prefix the client's requests go to.
func (c *Client) Prefix() string { return c.prefix }

// Stream returns a handle on the stream name. The name is checked when an
// operation is called, which then returns an error wrapping
// [subjects.ErrInvalidName]; a handle costs nothing and creates nothing.
// [StreamName] builds a valid name from arbitrary strings.
func (c *Client) Stream(name string) *Stream {
	return &Stream{c: c, name: name}
}

// StreamName builds a stream name from arbitrary path segments, one token
// each, escaping every byte a token may not hold as it is:
// StreamName("acme", "notes.txt") is "acme.notes%2Etxt". It does not check
// the result's length or token count; an operation on the stream does.
func StreamName(segments ...string) string {
	var b []byte
	for i, s := range segments {
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, subjects.Escape(s)...)
	}
	return string(b)
}

// NewMsgID returns a fresh random msg id: 128 bits, base64url, 22 bytes.
// [Stream.Set] and [Stream.SetMany] use it for writes without an id.
func NewMsgID() string {
	var b [16]byte
	crand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// subject returns the API subject of op on stream, after checking the
// names so that a bad one is reported as such rather than as a missing
// worker.
func (c *Client) subject(op, stream string) (string, error) {
	if err := c.check(stream); err != nil {
		return "", err
	}
	return subjects.APISubject(c.prefix, op, stream), nil
}

// check validates the client's prefix and a stream name.
func (c *Client) check(stream string) error {
	if err := subjects.ValidatePrefix(c.prefix); err != nil {
		return fmt.Errorf("client: prefix %q: %w", c.prefix, err)
	}
	if err := subjects.ValidateName(stream); err != nil {
		return fmt.Errorf("client: stream %q: %w", stream, err)
	}
	return nil
}

// withTimeout gives ctx the client's timeout unless it has an earlier
// deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// checkSize refuses a message NATS would refuse, with a clear error.
func (c *Client) checkSize(what string, hdr nats.Header, body []byte) error {
	limit := c.nc.MaxPayload()
	if limit <= 0 {
		return nil
	}
	size := int64(len(body))
	for k, vs := range hdr {
		for _, v := range vs {
			size += int64(len(k) + len(v) + 4)
		}
	}
	if size > limit {
		return fmt.Errorf("%w: %s of %d bytes, the server takes %d: %w", ErrTooLarge, what, size, limit, nats.ErrMaxPayload)
	}
	return nil
}

// request sends one request and returns its reply, turning an error reply
// into a *subjects.Error.
func (c *Client) request(ctx context.Context, op, stream string, hdr nats.Header, body []byte) (*nats.Msg, error) {
	subj, err := c.subject(op, stream)
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	m, err := c.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subj, Header: hdr, Data: body})
	if err != nil {
		return nil, requestError(subj, err)
	}
	if err := replyError(m); err != nil {
		return nil, err
	}
	return m, nil
}

// call sends one request and decodes its JSON reply into out.
func (c *Client) call(ctx context.Context, op, stream string, hdr nats.Header, body []byte, out any) error {
	m, err := c.request(ctx, op, stream, hdr, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadReply, op, err)
	}
	return nil
}

// retrying runs attempt until it succeeds, fails for good, the attempts
// run out or ctx ends. Timeouts are retried only when idempotent: a write
// without a msg id may have happened although its reply was lost.
func (c *Client) retrying(ctx context.Context, idempotent bool, attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || n >= c.retry.Attempts || !IsRetryable(err) || ctx.Err() != nil {
			return err
		}
		if !idempotent && isTimeout(err) {
			return err
		}
		t := time.NewTimer(c.backoff(n))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// backoff returns the delay before attempt n+1.
func (c *Client) backoff(n int) time.Duration {
	d := c.retry.Max
	if n < 30 {
		d = min(c.retry.Max, c.retry.Min<<n)
	}
	return rand.N(d) + 1
}

// requestError explains a failed request.
func requestError(subj string, err error) error {
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("client: %s: %w: %w", subj, ErrNoWorker, err)
	}
	return fmt.Errorf("client: %s: %w", subj, err)
}

// replyError returns the worker's error carried by m, or nil when m is not
// an error reply. The JSON body is preferred; the headers are the fallback
// for a body that does not parse.
func replyError(m *nats.Msg) error {
	code := m.Header.Get(headerServiceErrorCode)
	if code == "" {
		return nil
	}
	var body subjects.ErrorReply
	if err := json.Unmarshal(m.Data, &body); err == nil && body.Error != nil && body.Error.Reason != "" {
		return body.Error
	}
	n, _ := strconv.Atoi(code)
	reason := "unknown"
	if e, ok := reasonOf[n]; ok {
		reason = e.Reason
	}
	return &subjects.Error{Code: n, Reason: reason, Description: m.Header.Get(headerServiceError)}
}

// reasonOf maps the codes that have a single reason to it, to recover the
// reason of an error reply whose body is damaged. Codes 400, 429, 503 and
// 507 have several reasons and stay "unknown".
var reasonOf = map[int]*subjects.Error{
	404: subjects.ErrNotFound,
	409: subjects.ErrWrongLastSequence,
	410: ErrRevisionGone,
	413: subjects.ErrMsgTooLarge,
	500: subjects.ErrInternal,
}
