package subjects

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Limits of stream names (PROTOCOL.md section 1). They keep every stream's
// file path under SQLite's 512-byte limit once joined to a data directory of
// at most 160 bytes.
const (
	// MaxTokenLen is the most bytes of one token, counted as spelled.
	MaxTokenLen = 200
	// MaxTokens is the most tokens of one name.
	MaxTokens = 16
	// MaxNameLen is the most bytes of one name, dots included.
	MaxNameLen = 320
)

// ErrInvalidName is wrapped by every error that rejects a stream name or
// token, so callers can answer 400 invalid_stream with errors.Is.
var ErrInvalidName = errors.New("invalid stream name")

// dbExt is the file extension of a stream's database. No token can end in
// it because tokens never contain '.'.
const dbExt = ".db"

// plain reports the bytes a token holds as they are; every other byte is
// spelled %XX.
var plain = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['_'], t['='], t['-'] = true, true, true
	return t
}()

const upperHex = "0123456789ABCDEF"

// unhex returns the value of an upper-case hex digit; lower case is refused
// so that every byte has a single spelling.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// quote shortens untrusted input before it is put into an error message, so
// a hostile subject cannot blow up logs or replies.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

// byteName names a byte of a refused token: in hex, so that a byte of a
// multi-byte UTF-8 character is not shown as the Latin-1 character it is
// not, and with the character too when it is printable ASCII.
func byteName(c byte) string {
	if c > ' ' && c < 0x7F {
		return fmt.Sprintf("%q (0x%02X)", c, c)
	}
	return fmt.Sprintf("0x%02X", c)
}

// checkSpelling fails on any spelling of a token that is not the canonical
// one: a raw byte outside the set, a truncated or lower-case escape, or an
// escape of a byte that is allowed as it is.
func checkSpelling(tok string) error {
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if plain[c] {
			continue
		}
		if c != '%' {
			return fmt.Errorf("%w: token %s: byte %s at %d must be escaped as %%%02X", ErrInvalidName, quote(tok), byteName(c), i, c)
		}
		if i+2 >= len(tok) {
			return fmt.Errorf("%w: token %s: %% at %d needs two hex digits", ErrInvalidName, quote(tok), i)
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: token %s: %% at %d needs two upper-case hex digits", ErrInvalidName, quote(tok), i)
		}
		if b := hi<<4 | lo; plain[b] {
			return fmt.Errorf("%w: token %s: %%%c%c escapes %q, which must be spelled as it is", ErrInvalidName, quote(tok), tok[i+1], tok[i+2], b)
		}
		i += 2
	}
	return nil
}

// ValidateToken reports whether tok is one token of a stream name: 1 to
// [MaxTokenLen] bytes of [A-Za-z0-9_=-] and %XX escapes (upper-case hex) of
// bytes outside that set. Errors wrap [ErrInvalidName].
func ValidateToken(tok string) error {
	if tok == "" {
		return fmt.Errorf("%w: empty token", ErrInvalidName)
	}
	if len(tok) > MaxTokenLen {
		return fmt.Errorf("%w: token of %d bytes, more than %d", ErrInvalidName, len(tok), MaxTokenLen)
	}
	return checkSpelling(tok)
}

// ValidateName reports whether name is a stream name: valid tokens joined by
// '.', at most [MaxTokens] of them and [MaxNameLen] bytes in all. Errors wrap
// [ErrInvalidName].
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	// The length check comes first so a hostile subject costs no more than
	// MaxNameLen bytes of work.
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: name of %d bytes, more than %d", ErrInvalidName, len(name), MaxNameLen)
	}
	for n, rest := 1, name; ; n++ {
		if n > MaxTokens {
			return fmt.Errorf("%w: name %s has more than %d tokens", ErrInvalidName, quote(name), MaxTokens)
		}
		tok, after, more := strings.Cut(rest, ".")
		if err := ValidateToken(tok); err != nil {
			return fmt.Errorf("name %s: %w", quote(name), err)
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// Escape spells an arbitrary path segment as a token by escaping every byte
// outside [A-Za-z0-9_=-], so "a.txt" becomes "a%2Etxt" and ".." becomes
// "%2E%2E". The result is the only spelling [ValidateToken] accepts for
// those bytes. An empty segment gives "", and a long one may give more than
// [MaxTokenLen] bytes; both are invalid tokens for the caller to refuse.
func Escape(segment string) string {
	n := len(segment)
	for i := 0; i < len(segment); i++ {
		if !plain[segment[i]] {
			n += 2
		}
	}
	if n == len(segment) {
		return segment
	}
	var b strings.Builder
	b.Grow(n)
	for i := 0; i < len(segment); i++ {
		c := segment[i]
		if plain[c] {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0xF])
	}
	return b.String()
}

// Unescape returns the bytes a token stands for, the inverse of [Escape].
// It refuses any spelling Escape would not produce: raw bytes outside the
// set, lower-case hex, a truncated escape, or an escape of a byte allowed as
// it is. It does not check the length limits; [ValidateToken] does.
func Unescape(tok string) (string, error) {
	if err := checkSpelling(tok); err != nil {
		return "", err
	}
	n := strings.Count(tok, "%")
	if n == 0 {
		return tok, nil
	}
	b := make([]byte, 0, len(tok)-2*n)
	for i := 0; i < len(tok); i++ {
		if tok[i] != '%' {
			b = append(b, tok[i])
			continue
		}
		hi, _ := unhex(tok[i+1])
		lo, _ := unhex(tok[i+2])
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), nil
}

// Namespace returns the first token of name, the tenant that quotas are
// counted against.
func Namespace(name string) string {
	ns, _, _ := strings.Cut(name, ".")
	return ns
}

// Tokens splits name into its tokens, still escaped. It returns nil for the
// empty name.
func Tokens(name string) []string {
	if name == "" {
		return nil
	}
	return strings.Split(name, ".")
}

// Path returns the file of stream name relative to the data directory: its
// escaped tokens as directories and file name, plus ".db", so "a.b.c" is
// a/b/c.db. For a valid name the result is a local path that cannot leave
// the data directory; for an invalid name it is meaningless, so validate
// first.
func Path(name string) string {
	toks := Tokens(name)
	if len(toks) == 0 {
		return ""
	}
	toks[len(toks)-1] += dbExt
	return filepath.Join(toks...)
}

// NameFromPath returns the stream name whose [Path] is rel, a path relative
// to the data directory. It reports false for anything that is not exactly
// such a path: other extensions, empty, "." or ".." elements, invalid
// tokens, or a name over the limits. Files such as a database's -wal and
// -journal companions therefore never look like streams.
func NameFromPath(rel string) (string, bool) {
	stem, ok := strings.CutSuffix(rel, dbExt)
	if !ok || stem == "" {
		return "", false
	}
	// A '.' inside an element would pass for a token separator, yet
	// "a.b.db" is not the file of "a.b".
	if strings.Contains(stem, ".") {
		return "", false
	}
	name := strings.ReplaceAll(stem, string(filepath.Separator), ".")
	if ValidateName(name) != nil {
		return "", false
	}
	return name, true
}

// HasPrefix reports whether prefix is name or a leading run of its whole
// tokens: "acme" is a prefix of "acme" and "acme.x" but not of "acmecorp.x".
// The empty prefix matches nothing, since it is not a name.
func HasPrefix(name, prefix string) bool {
	if prefix == "" {
		return false
	}
	rest, ok := strings.CutPrefix(name, prefix)
	return ok && (rest == "" || rest[0] == '.')
}
