package subjects

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Header names of the protocol, spelled exactly as on the wire (NATS header
// names are case-sensitive).
const (
	// HeaderKey makes a write keyed and carries a stored message's key.
	HeaderKey = "Persist-Key"
	// HeaderPreviousSeq makes a keyed write conditional on the key's seq.
	HeaderPreviousSeq = "Persist-Previous-Seq"
	// HeaderMsgID deduplicates writes within the duplicate window.
	HeaderMsgID = "Persist-Msg-Id"
	// HeaderTTL gives one message a time to live.
	HeaderTTL = "Persist-TTL"
	// HeaderSeq carries a message's sequence number.
	HeaderSeq = "Persist-Seq"
	// HeaderTime carries a message's time in Unix milliseconds.
	HeaderTime = "Persist-Time"
	// HeaderExpires carries when a message with a TTL expires, Unix ms.
	HeaderExpires = "Persist-Expires"
	// HeaderOp names the kind of an event.
	HeaderOp = "Persist-Op"
	// HeaderRevision carries a stream's revision on events and terminators.
	HeaderRevision = "Persist-Revision"
	// HeaderReason says why a delete event removed messages.
	HeaderReason = "Persist-Reason"
	// HeaderEnd marks the terminator of a getall page.
	HeaderEnd = "Persist-End"
	// HeaderLastSeq carries the stream's last seq on a getall terminator.
	HeaderLastSeq = "Persist-Last-Seq"
	// HeaderNumPending counts the messages of a getall range not yet sent.
	HeaderNumPending = "Persist-Num-Pending"
	// HeaderNextSeq is where the next getall page of a range starts.
	HeaderNextSeq = "Persist-Next-Seq"
	// HeaderWorker names the worker (its micro instance id) on every reply
	// of a partitioned worker but the messages of a stream (get, and the
	// pages of getall and changes). Not in PROTOCOL.md: an extension, which
	// a write may not carry (any other Persist- name is a 400), so it is
	// kept off the messages a client may copy into another stream.
	HeaderWorker = "Persist-Worker"
)

// requestHeaders are the headers a write may carry, in their one spelling.
var requestHeaders = []string{HeaderKey, HeaderPreviousSeq, HeaderMsgID, HeaderTTL}

// outputHeaders are the headers the worker puts on messages it sends, which
// a write may carry in any letter case so that a message read from one
// stream can be written to another as it is.
var outputHeaders = []string{HeaderSeq, HeaderTime, HeaderExpires, HeaderOp, HeaderRevision, HeaderReason, HeaderEnd, HeaderLastSeq, HeaderNumPending, HeaderNextSeq}

// HeaderKind says how an incoming header on a write is treated
// (PROTOCOL.md section 4, "set").
type HeaderKind int

// The kinds of header returned by [ClassifyHeader].
const (
	// HeaderUser is stored with the message.
	HeaderUser HeaderKind = iota
	// HeaderRequest is one of the four request headers in its exact
	// spelling: [HeaderKey], [HeaderPreviousSeq], [HeaderMsgID], [HeaderTTL].
	HeaderRequest
	// HeaderIgnored is dropped without error: any Nats-* header, and the
	// names the worker itself sends, in any letter case.
	HeaderIgnored
	// HeaderBad makes the request a 400 bad_request: any other Persist-*
	// name, a request name in another letter case, or a name that is not a
	// valid header field name.
	HeaderBad
)

// String returns the kind's name, for logs and test failures.
func (k HeaderKind) String() string {
	switch k {
	case HeaderUser:
		return "user"
	case HeaderRequest:
		return "request"
	case HeaderIgnored:
		return "ignored"
	case HeaderBad:
		return "bad"
	}
	return "HeaderKind(" + strconv.Itoa(int(k)) + ")"
}

// ClassifyHeader says how a header named name on a set or setmany is
// treated. The Persist- and Nats- prefixes are matched in any ASCII letter
// case. A name must be printable ASCII without any of "(),/:;<=>?@[\]{},
// since a stored user header is sent again on every read and on its event:
// NATS clients (nats.go among them) refuse to send any other name, which
// would make the message unreadable. "Status" in any letter case is
// refused too: NATS clients read it as the server's status line, so that a
// message with "Status: 503" and an empty body would read as "no
// responders".
func ClassifyHeader(name string) HeaderKind {
	if name == "" || strings.EqualFold(name, "Status") {
		return HeaderBad
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7F || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return HeaderBad
		}
	}
	for _, h := range requestHeaders {
		if name == h {
			return HeaderRequest
		}
	}
	if hasPrefixFold(name, "Nats-") {
		return HeaderIgnored
	}
	if !hasPrefixFold(name, "Persist-") {
		return HeaderUser
	}
	for _, h := range outputHeaders {
		if strings.EqualFold(name, h) {
			return HeaderIgnored
		}
	}
	// Every remaining Persist- name is refused, a request name in the wrong
	// case included: silently storing or dropping it would hide a typo that
	// changes what the write means.
	return HeaderBad
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII letter case. The whole
// name is printable ASCII by then, so EqualFold's Unicode folding cannot
// match anything unexpected (such as the Kelvin sign for 'k').
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// MaxTTL bounds a message's time to live so that adding it to a time cannot
// overflow.
const MaxTTL = 100 * 365 * 24 * time.Hour

// maxTTLLen bounds the Persist-TTL value parsed; no sensible duration is
// longer.
const maxTTLLen = 64

// ParseTTL parses a Persist-TTL value: a positive Go duration ("1500ms",
// "90s", "2h") or a positive number of seconds ("90"), at most [MaxTTL].
func ParseTTL(v string) (time.Duration, error) {
	if v == "" || len(v) > maxTTLLen {
		return 0, fmt.Errorf("invalid %s %s", HeaderTTL, quote(v))
	}
	var d time.Duration
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > int64(MaxTTL/time.Second) {
			return 0, fmt.Errorf("%s %s: more than %v", HeaderTTL, quote(v), MaxTTL)
		}
		d = time.Duration(n) * time.Second
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, fmt.Errorf("%s %s: not a duration or a number of seconds", HeaderTTL, quote(v))
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s %s: not positive", HeaderTTL, quote(v))
	}
	if d > MaxTTL {
		return 0, fmt.Errorf("%s %s: more than %v", HeaderTTL, quote(v), MaxTTL)
	}
	return d, nil
}

// MaxKeyLen is the most bytes of a message key.
const MaxKeyLen = 1024

// ValidateKey reports whether key can be a message key: 1 to [MaxKeyLen]
// bytes of UTF-8 without control characters, neither beginning nor ending
// with ASCII white space (which a header value would not carry faithfully).
func ValidateKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("key of %d bytes, more than %d", len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("key %s is not UTF-8", quote(key))
	case isASCIISpace(key[0]) || isASCIISpace(key[len(key)-1]):
		return fmt.Errorf("key %s begins or ends with white space", quote(key))
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return fmt.Errorf("key %s has control character %U", quote(key), r)
		}
	}
	return nil
}

func isASCIISpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}
