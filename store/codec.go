package store

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/valyala/gozstd"

	"github.com/nats-persist/persist/subjects"
)

// Row flags, stored per message so that a change of the compression setting
// never affects messages already written.
const flagZstd = 1

// encodeHeader packs user headers into a compact blob: a uvarint count of
// names, then per name (in sorted order, so equal headers encode equally)
// a uvarint length and the name, a uvarint count of values, and each value
// as a uvarint length and the bytes. Values keep their order. No headers
// encode as nil.
func encodeHeader(h map[string][]string) []byte {
	if len(h) == 0 {
		return nil
	}
	names := make([]string, 0, len(h))
	size := binary.MaxVarintLen64
	for name, vals := range h {
		names = append(names, name)
		size += 2*binary.MaxVarintLen64 + len(name)
		for _, v := range vals {
			size += binary.MaxVarintLen64 + len(v)
		}
	}
	sort.Strings(names)
	b := make([]byte, 0, size)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, name := range names {
		b = appendString(b, name)
		vals := h[name]
		b = binary.AppendUvarint(b, uint64(len(vals)))
		for _, v := range vals {
			b = appendString(b, v)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeHeader reverses [encodeHeader]. It never panics and never allocates
// more than the blob can describe: a damaged blob is an error wrapping
// ErrCorrupt.
func decodeHeader(b []byte) (map[string][]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	d := decoder{b: b}
	n := d.count()
	h := make(map[string][]string, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		name := d.string()
		vals := make([]string, d.count())
		for j := range vals {
			vals[j] = d.string()
		}
		if d.err != nil {
			break
		}
		if name == "" {
			d.fail("empty header name")
		} else if _, dup := h[name]; dup {
			d.fail("header name repeated")
		}
		h[name] = vals
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return h, nil
}

type decoder struct {
	b    []byte
	err  error
	what string // what b holds, for errors ("": a header)
}

func (d *decoder) fail(why string) {
	if d.err == nil {
		what := d.what
		if what == "" {
			what = "header"
		}
		d.err = fmt.Errorf("%w: %s: %s", ErrCorrupt, what, why)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad length")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items; each item takes at least one byte, so a
// count larger than the rest of the blob is damage, not a reason to
// allocate.
func (d *decoder) count() uint64 {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("count exceeds data")
		return 0
	}
	return n
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length exceeds data")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// validHeader checks user headers before they are stored: names are
// non-empty tokens without white space, control characters or ':', values
// have no control characters other than tab (a NATS header line could not
// carry them).
func validHeader(h map[string][]string) error {
	for name, vals := range h {
		if name == "" {
			return fmt.Errorf("%w: empty header name", ErrInvalid)
		}
		if strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == ':' || r == 0x7f }) >= 0 {
			return fmt.Errorf("%w: bad header name %q", ErrInvalid, name)
		}
		for _, v := range vals {
			if strings.IndexFunc(v, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) >= 0 {
				return fmt.Errorf("%w: bad value of header %q", ErrInvalid, name)
			}
		}
	}
	return nil
}

// encodeData returns the payload as stored and its row flags.
func encodeData(data []byte, c Config) ([]byte, int64) {
	if c.Compression == subjects.CompressionZstd && int64(len(data)) > c.CompressionThreshold {
		z := gozstd.Compress(nil, data)
		if len(z) < len(data) {
			return z, flagZstd
		}
	}
	if data == nil {
		data = []byte{}
	}
	return data, 0
}

// maxDecoded bounds what a stored payload decompresses to. No message
// larger than the largest NATS max_payload (64 MiB) can have been written,
// and a damaged zstd frame that claims a larger content size must not
// make the worker allocate it (gozstd.Decompress allocates what the frame
// claims, and panics when that is not a valid slice length).
const maxDecoded = 64 << 20

// decodeData reverses [encodeData]; a payload that does not decompress is
// damage.
func decodeData(stored []byte, flags int64) ([]byte, error) {
	if flags&flagZstd == 0 {
		return stored, nil
	}
	data, err := gozstd.DecompressLimited(nil, stored, maxDecoded)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrCorrupt, err)
	}
	return data, nil
}
