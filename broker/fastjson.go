package broker

import (
	"encoding/base64"

	"github.com/nats-persist/persist/subjects"
)

// The fast paths of decodeStrict for the small bodies most requests carry
// ({"seq":N}, {"key":"k"}, getall's integer fields, {"after":…,"limit":N})
// and of parseSetMany for arrays of plain items. They accept only a
// subset of JSON they can read with certainty the way encoding/json
// would; for anything else they report false and the strict decoder runs,
// so results and errors are those of encoding/json.

// maxFlatFields bounds the fields scanFlat reads; the request types have
// at most five.
const maxFlatFields = 5

// flatField is one field of a flat JSON object read by scanFlat.
type flatField struct {
	name []byte // as spelled between the quotes
	num  bool   // the value is a number, else a string
	val  []byte // the digits, or the string's bytes between the quotes
}

// scanFlat reads body as one JSON object whose names and string values
// are printable ASCII without escapes, whose numbers are non-negative
// integers (no sign, fraction, exponent or leading zero), with JSON white
// space around tokens, at most len(out) fields and no name twice. Anything
// else is not ok.
func scanFlat(body []byte, out []flatField) (n int, ok bool) {
	n, i, ok := scanObject(body, skipSpace(body, 0), out)
	return n, ok && skipSpace(body, i) == len(body)
}

// scanObject reads the object of scanFlat at body[i]; it returns the
// index after it.
func scanObject(body []byte, i int, out []flatField) (n, next int, ok bool) {
	if i >= len(body) || body[i] != '{' {
		return 0, 0, false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return 0, i + 1, true
	}
	for {
		if n == len(out) {
			return 0, 0, false
		}
		f := &out[n]
		var s []byte
		if s, i, ok = scanString(body, i); !ok {
			return 0, 0, false
		}
		f.name = s
		for _, g := range out[:n] {
			if string(g.name) == string(s) {
				return 0, 0, false
			}
		}
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != ':' {
			return 0, 0, false
		}
		i = skipSpace(body, i+1)
		if i >= len(body) {
			return 0, 0, false
		}
		switch c := body[i]; {
		case c == '"':
			if f.val, i, ok = scanString(body, i); !ok {
				return 0, 0, false
			}
			f.num = false
		case c >= '0' && c <= '9':
			j := i
			for j < len(body) && body[j] >= '0' && body[j] <= '9' {
				j++
			}
			if c == '0' && j-i > 1 {
				return 0, 0, false
			}
			f.val, f.num, i = body[i:j], true, j
		default:
			return 0, 0, false
		}
		n++
		i = skipSpace(body, i)
		if i >= len(body) {
			return 0, 0, false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return n, i + 1, true
		default:
			return 0, 0, false
		}
	}
}

// scanString reads the JSON string at body[i] when it has only printable
// ASCII and no escape; it returns its bytes and the index after it.
func scanString(body []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(body) || body[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(body); j++ {
		switch c := body[j]; {
		case c == '"':
			return body[i+1 : j], j + 1, true
		case c < ' ' || c > '~' || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

func skipSpace(body []byte, i int) int {
	for i < len(body) {
		switch body[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// flatUint is a flat number field's value; not ok when it overflows
// max.
func flatUint(f flatField, max uint64) (uint64, bool) {
	if !f.num {
		return 0, false
	}
	var v uint64
	for _, c := range f.val {
		d := uint64(c - '0')
		if v > (max-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

const maxInt64 = 1<<63 - 1

// decodeFast decodes body into v when v is one of the request types it
// knows and body is within what scanFlat reads, every field named exactly
// as the type's JSON tag with a value of the right kind. It reports
// whether it did; when not, v is unchanged.
func decodeFast(body []byte, v any) bool {
	var fs [maxFlatFields]flatField
	n, ok := scanFlat(body, fs[:])
	if !ok {
		return false
	}
	fields := fs[:n]
	switch v := v.(type) {
	case *getReq:
		var g getReq
		for _, f := range fields {
			switch string(f.name) {
			case "seq":
				if g.seq, ok = flatUint(f, 1<<64-1); !ok {
					return false
				}
				g.Seq = &v.seq
			case "key":
				if f.num {
					return false
				}
				g.key = string(f.val)
				g.Key = &v.key
			default:
				return false
			}
		}
		*v = g
	case *subjects.GetAllRequest:
		var g subjects.GetAllRequest
		for _, f := range fields {
			var p *uint64
			switch string(f.name) {
			case "start_seq":
				p = &g.StartSeq
			case "end_seq":
				p = &g.EndSeq
			case "max_msgs":
				p = &g.MaxMsgs
			case "max_bytes":
				p = &g.MaxBytes
			case "start_time":
				t, ok := flatUint(f, maxInt64)
				if !ok {
					return false
				}
				g.StartTime = int64(t)
				continue
			default:
				return false
			}
			if *p, ok = flatUint(f, 1<<64-1); !ok {
				return false
			}
		}
		*v = g
	case *subjects.PageRequest:
		var p subjects.PageRequest
		for _, f := range fields {
			switch string(f.name) {
			case "after":
				if f.num {
					return false
				}
				p.After = string(f.val)
			case "limit":
				if p.Limit, ok = flatUint(f, 1<<64-1); !ok {
					return false
				}
			default:
				return false
			}
		}
		*v = p
	default:
		return false
	}
	return true
}

// fastSetMany parses a setmany body whose elements are all objects that
// scanObject reads, of the fields data (base64 of the standard alphabet),
// key, msg_id, ttl and previous_seq, at most subjects.MaxSetMany of them, as
// parseSetManyJSON would. Anything else is not ok, and parseSetManyJSON
// decides, an element that is bad for another reason included.
func fastSetMany(body []byte) ([]item, bool) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '[' {
		return nil, false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == ']' {
		return []item{}, skipSpace(body, i+1) == len(body)
	}
	var items []item
	for {
		if len(items) == subjects.MaxSetMany {
			return nil, false
		}
		var fs [maxFlatFields]flatField
		n, next, ok := scanObject(body, i, fs[:])
		if !ok {
			return nil, false
		}
		var it setManyItem
		if !it.fromFlat(fs[:n]) {
			return nil, false
		}
		w, err := it.write()
		items = append(items, item{w: w, err: err})
		i = skipSpace(body, next)
		if i >= len(body) {
			return nil, false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case ']':
			return items, skipSpace(body, i+1) == len(body)
		default:
			return nil, false
		}
	}
}

// fromFlat sets it from the fields of a flat object as encoding/json
// would, or reports false.
func (it *setManyItem) fromFlat(fields []flatField) bool {
	for _, f := range fields {
		if string(f.name) == "ttl" || string(f.name) == "previous_seq" {
			max := uint64(1<<64 - 1)
			if string(f.name) == "ttl" {
				max = maxInt64
			}
			v, ok := flatUint(f, max)
			if !ok {
				return false
			}
			if string(f.name) == "ttl" {
				ms := int64(v)
				it.TTL = &ms
			} else {
				it.PreviousSeq = &v
			}
			continue
		}
		if f.num {
			return false
		}
		switch string(f.name) {
		case "data":
			// encoding/json decodes a []byte with base64.StdEncoding; the
			// alphabet alone keeps out what it would treat apart (escapes,
			// line breaks).
			for _, c := range f.val {
				if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
					return false
				}
			}
			d := make([]byte, base64.StdEncoding.DecodedLen(len(f.val)))
			n, err := base64.StdEncoding.Decode(d, f.val)
			if err != nil {
				return false
			}
			d = d[:n]
			it.Data = &d
		case "key":
			k := string(f.val)
			it.Key = &k
		case "msg_id":
			id := string(f.val)
			it.MsgID = &id
		default:
			return false
		}
	}
	return true
}
