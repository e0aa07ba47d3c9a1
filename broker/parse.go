package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// job is one parsed request waiting for its stream.
type job struct {
	op       string
	reply    string
	at       time.Time // when its request arrived (request.at); zero for an inline get
	answered bool

	items []item  // set: one; setmany: one per element
	one   [1]item // what a set's items are, so that they need no allocation
	many  bool    // setmany: the reply is an array

	get     getReq
	getall  subjects.GetAllRequest
	del     subjects.DeleteRequest
	keys    subjects.PageRequest
	changes subjects.ChangesRequest
	config  []byte // config: the patch; empty to read
}

func (j *job) isWrite() bool { return j.op == subjects.OpSet || j.op == subjects.OpSetMany }

// item is one write of a set or setmany: either a store write or the error
// that refused it before it reached the store.
type item struct {
	w   store.Write
	err error
}

// getReq is a get body as the worker decodes it: decodeFast points Seq
// and Key at seq and key, so that they need no allocation of their own.
type getReq struct {
	subjects.GetRequest
	seq uint64
	key string
}

// jobPool recycles jobs: one is taken for every request parsed and given
// back once it was applied and answered, so that the hot paths allocate
// none (a job is ~350 bytes, the largest allocation of a get).
var jobPool = sync.Pool{New: func() any { return new(job) }}

// putJob gives j back to the pool; nothing may use it afterwards.
func putJob(j *job) {
	*j = job{}
	jobPool.Put(j)
}

// parseJob validates a request of op for the per-stream work. The job comes
// from the pool: the caller gives it back with putJob once it is answered.
func parseJob(op string, body []byte, h nats.Header) (*job, error) {
	j := jobPool.Get().(*job)
	j.op = op
	var err error
	switch op {
	case subjects.OpSet:
		var w store.Write
		w, err = parseSet(body, h)
		j.one[0].w = w
		j.items = j.one[:]
	case subjects.OpSetMany:
		j.many = true
		j.items, err = parseSetMany(body)
	case subjects.OpGet:
		if err = decodeStrict(body, &j.get); err == nil {
			err = j.get.Validate()
		}
	case subjects.OpGetAll:
		err = decodeOptional(body, &j.getall)
	case subjects.OpDelete:
		if err = decodeStrict(body, &j.del); err == nil {
			err = j.del.Validate()
		}
	case subjects.OpKeys:
		err = decodeOptional(body, &j.keys)
	case subjects.OpChanges:
		err = decodeOptional(body, &j.changes)
	case subjects.OpConfig:
		if !blank(body) {
			// The store reads the patch; what encoding/json would let
			// through there is refused here.
			if err = strictFields(body, configFields, "desc"); err == nil {
				j.config = body
			}
		}
	case subjects.OpInventory, subjects.OpDestroy:
		// No body is defined; anything sent is ignored, as a NATS user
		// sending an empty request with `nats req` may add a payload.
	default:
		err = badRequest("unknown operation")
	}
	if err != nil {
		putJob(j)
		return nil, err
	}
	return j, nil
}

// outputReserve bounds what the worker adds to a stored message when it
// sends it (the NATS header preamble, Persist-Seq, -Time, -Expires, -Op and
// -Revision with 20-digit values); the key is counted apart.
const outputReserve = 256

// refuseUnsendable marks the items whose message, once stored, could not be
// sent back within the connection's maximum payload: a get of it could not
// be answered and its set event would be lost. maxPayload <= 0 (unknown)
// checks nothing.
func refuseUnsendable(items []item, maxPayload int64) {
	if maxPayload <= 0 {
		return
	}
	for i := range items {
		it := &items[i]
		if it.err != nil {
			continue
		}
		n := int64(len(it.w.Data)+len(it.w.Key)) + outputReserve
		for name, vals := range it.w.Header {
			for _, v := range vals {
				n += int64(len(name) + len(v) + 4) // "name: value\r\n"
			}
		}
		if n > maxPayload {
			it.err = subjects.ErrMsgTooLarge.WithDescription(fmt.Sprintf("message too large to be sent back within the NATS max payload of %d bytes", maxPayload))
		}
	}
}

// decodeStrict decodes exactly one JSON value of body into v: unknown
// fields, wrong types and trailing data are a 400. The common small bodies
// take decodeFast, which gives the same result.
func decodeStrict(body []byte, v any) error {
	if decodeFast(body, v) {
		return nil
	}
	return decodeJSON(body, v)
}

// decodeJSON is decodeStrict through encoding/json alone.
func decodeJSON(body []byte, v any) error {
	if !utf8.Valid(body) {
		return badRequest("invalid JSON: not UTF-8")
	}
	if names := jsonFields(v); names != nil {
		if err := strictFields(body, names, ""); err != nil {
			return err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("empty body")
		}
		return badRequest(jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("invalid JSON: data after the value")
	}
	return nil
}

// jsonProblem describes a JSON decoding error in the protocol's terms, not
// in terms of the Go types it was decoded into.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// An embedded struct's name leads the path ("GetRequest.seq"):
		// the protocol's names are all lower case.
		for first, rest, ok := strings.Cut(te.Field, "."); ok && first != "" && first[0] >= 'A' && first[0] <= 'Z'; first, rest, ok = strings.Cut(rest, ".") {
			te.Field = rest
		}
		if te.Field == "" {
			return fmt.Sprintf("invalid JSON: %s value where another type is expected", te.Value)
		}
		return fmt.Sprintf("invalid JSON: field %q cannot be a %s", te.Field, te.Value)
	}
	return "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

// decodeOptional is decodeStrict where an empty body means all defaults.
func decodeOptional(body []byte, v any) error {
	if blank(body) {
		return nil
	}
	return decodeStrict(body, v)
}

// blank reports whether body holds nothing but JSON white space.
func blank(body []byte) bool { return len(bytes.Trim(body, " \t\r\n")) == 0 }

// strictFields refuses what encoding/json lets through when it decodes an
// object into a struct, so that every body has one meaning: text that is
// not UTF-8 (it would become U+FFFD), null as the body (it would read as
// {}), a name not spelled exactly as one of names (it matches names in
// any letter case), a name given twice (it keeps the last) and null in
// a value, except in the field nullable (it leaves the field or element
// unset, so that {"seq":null,"key":"k"} would read as a key and
// {"seqs":[null]} as seq 0). Anything else that is wrong is left for the
// decoder to report.
func strictFields(body []byte, names []string, nullable string) error {
	if !utf8.Valid(body) {
		return badRequest("invalid JSON: not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil
	}
	if tok == nil {
		return badRequest("invalid JSON: null where an object is expected")
	}
	if tok != json.Delim('{') {
		return nil
	}
	seen := make([]string, 0, len(names))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil
		}
		switch {
		case !slices.Contains(names, name):
			return badRequest(fmt.Sprintf("unknown field %s", strconv.Quote(name)))
		case slices.Contains(seen, name):
			return badRequest(fmt.Sprintf("field %s given twice", strconv.Quote(name)))
		case name != nullable && hasNull(raw):
			return badRequest(fmt.Sprintf("field %s cannot be or hold null", strconv.Quote(name)))
		}
		seen = append(seen, name)
	}
	return nil
}

// hasNull reports whether the JSON value raw is or holds null.
func hasNull(raw []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if tok == nil {
			return true
		}
	}
}

// configFields are the JSON names of a config patch.
var configFields = structFields(reflect.TypeFor[store.Config]())

// fieldsOf caches the JSON names of the request types by type.
var fieldsOf sync.Map // reflect.Type -> []string

// jsonFields returns the JSON names of the struct v points to, or nil
// when v does not point to a struct.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	if names, ok := fieldsOf.Load(t); ok {
		return names.([]string)
	}
	names := structFields(t.Elem())
	fieldsOf.Store(t, names)
	return names
}

// structFields returns the JSON names of the exported fields of struct t,
// those of embedded structs included, as encoding/json sees them.
func structFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Tag.Get("json") == "" {
			names = append(names, structFields(f.Type)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// parseSet turns a set request into a write: user headers are kept, the
// four request headers parsed, output and Nats- headers dropped.
func parseSet(body []byte, h nats.Header) (store.Write, error) {
	w := store.Write{Data: body}
	var key, prev, msgID, ttl []string
	for name, vals := range h {
		switch subjects.ClassifyHeader(name) {
		case subjects.HeaderUser:
			if err := addUserHeader(&w, name, vals); err != nil {
				return w, err
			}
		case subjects.HeaderRequest:
			switch name {
			case subjects.HeaderKey:
				key = vals
			case subjects.HeaderPreviousSeq:
				prev = vals
			case subjects.HeaderMsgID:
				msgID = vals
			case subjects.HeaderTTL:
				ttl = vals
			}
		case subjects.HeaderIgnored:
		default:
			return w, badRequest(fmt.Sprintf("header %s is not allowed", strconv.Quote(name)))
		}
	}
	var err error
	if key != nil {
		k, err := oneValue(subjects.HeaderKey, key)
		if err != nil {
			return w, err
		}
		w.Key = k
	}
	var prevSeq *uint64
	if prev != nil {
		v, err := oneValue(subjects.HeaderPreviousSeq, prev)
		if err != nil {
			return w, err
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return w, badRequest(subjects.HeaderPreviousSeq + " must be a non-negative integer")
		}
		prevSeq = &n
	}
	var id *string
	if msgID != nil {
		v, err := oneValue(subjects.HeaderMsgID, msgID)
		if err != nil {
			return w, err
		}
		id = &v
	}
	var d time.Duration
	if ttl != nil {
		v, err := oneValue(subjects.HeaderTTL, ttl)
		if err != nil {
			return w, err
		}
		if d, err = subjects.ParseTTL(v); err != nil {
			return w, badRequest(err.Error())
		}
	}
	err = completeWrite(&w, key != nil, prevSeq, id, d)
	return w, err
}

// oneValue is the single value of a request header.
func oneValue(name string, vals []string) (string, error) {
	if len(vals) != 1 {
		return "", badRequest(name + " must have exactly one value")
	}
	return vals[0], nil
}

// completeWrite checks and sets the request parts shared by set headers
// and setmany fields.
func completeWrite(w *store.Write, keyed bool, prev *uint64, msgID *string, ttl time.Duration) error {
	if keyed {
		if err := subjects.ValidateKey(w.Key); err != nil {
			return badRequest(err.Error())
		}
	}
	if prev != nil {
		if !keyed {
			return badRequest("a previous seq needs a key")
		}
		w.PreviousSeq = prev
	}
	if msgID != nil {
		switch id := *msgID; {
		case id == "":
			return badRequest("empty message id")
		case len(id) > subjects.MaxMsgIDLen:
			return badRequest(fmt.Sprintf("message id longer than %d bytes", subjects.MaxMsgIDLen))
		case strings.ContainsFunc(id, func(r rune) bool { return r < ' ' || r == 0x7F }):
			return badRequest("message id has control characters")
		}
		w.MsgID = *msgID
	}
	w.TTL = ttl
	return nil
}

// addUserHeader stores a user header's values on w, refusing values that
// would break a header block when the message is sent again.
func addUserHeader(w *store.Write, name string, vals []string) error {
	for _, v := range vals {
		if strings.ContainsAny(v, "\r\n") {
			return badRequest(fmt.Sprintf("header %s has a line break", strconv.Quote(name)))
		}
		// NATS clients trim a header value when they send it, so such a
		// value would not be read back as it was stored.
		if v != strings.Trim(v, " \t") {
			return badRequest(fmt.Sprintf("header %s has a value that begins or ends with white space", strconv.Quote(name)))
		}
	}
	if len(vals) == 0 {
		return nil
	}
	if w.Header == nil {
		w.Header = make(map[string][]string)
	}
	w.Header[name] = vals
	return nil
}

// setManyItem is one element of a setmany body.
type setManyItem struct {
	Data        *[]byte             `json:"data"`
	Key         *string             `json:"key"`
	Headers     map[string][]string `json:"headers"`
	MsgID       *string             `json:"msg_id"`
	TTL         *int64              `json:"ttl"`
	PreviousSeq *uint64             `json:"previous_seq"`
}

// parseSetMany parses a setmany body. A body that is not a JSON array of at
// most subjects.MaxSetMany elements fails as a whole; an element that is bad fails
// alone, as its own entry of the reply. The common bodies take
// fastSetMany, which gives the same items.
func parseSetMany(body []byte) ([]item, error) {
	if items, ok := fastSetMany(body); ok {
		return items, nil
	}
	return parseSetManyJSON(body)
}

// parseSetManyJSON is parseSetMany through encoding/json alone.
func parseSetManyJSON(body []byte) ([]item, error) {
	var raw []json.RawMessage
	if err := decodeStrict(body, &raw); err != nil {
		return nil, badRequest("setmany body must be a JSON array")
	}
	if raw == nil {
		return nil, badRequest("setmany body must be a JSON array")
	}
	if len(raw) > subjects.MaxSetMany {
		return nil, badRequest(fmt.Sprintf("setmany of more than %d items", subjects.MaxSetMany))
	}
	items := make([]item, len(raw))
	for i, r := range raw {
		w, err := parseSetManyItem(r)
		items[i] = item{w: w, err: err}
	}
	return items, nil
}

// parseSetManyItem parses one setmany element.
func parseSetManyItem(raw json.RawMessage) (store.Write, error) {
	var it setManyItem
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("null")) {
		return store.Write{}, badRequest("item is not an object")
	}
	if err := decodeStrict(raw, &it); err != nil {
		return store.Write{}, err
	}
	return it.write()
}

// write checks a decoded setmany element and makes its write. Its
// "headers" follow the set rules for user, Nats- and output headers
// (stored, dropped, dropped), but a request header such as Persist-Key is
// a 400 there: the element has fields for those, and silently ignoring one
// would change what the write means.
func (it *setManyItem) write() (store.Write, error) {
	if it.Data == nil {
		return store.Write{}, badRequest(`item needs "data"`)
	}
	w := store.Write{Data: *it.Data}
	for name, vals := range it.Headers {
		switch subjects.ClassifyHeader(name) {
		case subjects.HeaderUser:
			if err := addUserHeader(&w, name, vals); err != nil {
				return w, err
			}
		case subjects.HeaderIgnored:
		default:
			return w, badRequest(fmt.Sprintf("header %s is not allowed in an item", strconv.Quote(name)))
		}
	}
	if it.Key != nil {
		w.Key = *it.Key
	}
	var ttl time.Duration
	if it.TTL != nil {
		ms := *it.TTL
		if ms <= 0 || ms > subjects.MaxTTL.Milliseconds() {
			return w, badRequest(`"ttl" must be a positive number of milliseconds`)
		}
		ttl = time.Duration(ms) * time.Millisecond
	}
	err := completeWrite(&w, it.Key != nil, it.PreviousSeq, it.MsgID, ttl)
	return w, err
}
