package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/subjects"
)

// DefaultTimeout bounds a request whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// ErrNoWorker is wrapped by the error of a request that no persist worker
// answered because none listens on its subject (a wrong prefix, or the
// worker is down).
var ErrNoWorker = errors.New("client: no persist worker is listening")

// Headers of a worker's error reply, as nats.go micro writes them.
const (
	headerServiceError     = "Nats-Service-Error"
	headerServiceErrorCode = "Nats-Service-Error-Code"
)

// Client talks to persist workers over one NATS connection. It is safe for
// concurrent use.
type Client struct {
	nc      *nats.Conn
	prefix  string
	timeout time.Duration
}

// Option configures a [Client].
type Option func(*Client)

// WithPrefix sets the subject prefix the workers serve; the default is
// [subjects.DefaultPrefix].
func WithPrefix(prefix string) Option { return func(c *Client) { c.prefix = prefix } }

// WithTimeout sets how long a request may take when its context has no
// deadline; the default is [DefaultTimeout].
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// New returns a client on nc.
func New(nc *nats.Conn, opts ...Option) *Client {
	c := &Client{nc: nc, prefix: subjects.DefaultPrefix, timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c
}

// Stream returns a handle on the stream name. The name is checked when an
// operation is called, which then returns an error wrapping
// [subjects.ErrInvalidName]; a handle costs nothing and creates nothing.
func (c *Client) Stream(name string) *Stream {
	return &Stream{c: c, name: name}
}

// List returns the names of the streams under prefix (whole tokens: "acme"
// lists "acme" and "acme.x", not "acmecorp"), sorted, starting after the
// stream after, at most limit of them (0: the worker's default). more
// reports that there are further names.
func (c *Client) List(ctx context.Context, prefix, after string, limit int) (names []string, more bool, err error) {
	body, err := json.Marshal(struct {
		After string `json:"after,omitempty"`
		Limit int    `json:"limit,omitempty"`
	}{after, limit})
	if err != nil {
		return nil, false, err
	}
	var reply struct {
		Streams []string `json:"streams"`
		More    bool     `json:"more"`
	}
	if err := c.call(ctx, subjects.OpList, prefix, nil, body, &reply); err != nil {
		return nil, false, err
	}
	return reply.Streams, reply.More, nil
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

// withTimeout gives ctx the client's timeout unless it has a deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
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
		return fmt.Errorf("client: %s reply: %w", op, err)
	}
	return nil
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
	var body struct {
		Error *subjects.Error `json:"error"`
	}
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
// reason of an error reply whose body is damaged. Codes 400 and 429 have
// several reasons and stay "unknown".
var reasonOf = map[int]*subjects.Error{
	404: subjects.ErrNotFound,
	409: subjects.ErrWrongLastSequence,
	413: subjects.ErrMsgTooLarge,
	500: subjects.ErrInternal,
	503: subjects.ErrUnavailable,
	507: subjects.ErrLimitReached,
}
