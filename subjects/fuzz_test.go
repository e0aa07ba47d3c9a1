package subjects

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzName(f *testing.F) {
	for _, s := range []string{
		"acme", "acme.docs", "acme.projects.3fa2b1.notes%2Etxt", "acme.%2E%2E",
		"%2E%2E.%2F", "a..b", ".a", "a.", "a%2e", "%41", "a%", "*", ">", "a b",
		"acme.db", "a/b.db", "a.b.db", "../a.db", "a/./b.db", "/a.db", "a/b.db-wal",
		strings.Repeat("a.", MaxTokens) + "a", strings.Repeat("a", MaxTokenLen+1),
	} {
		f.Add(s)
	}
	dataDir := filepath.Join(string(filepath.Separator)+"srv", "persist-data")
	f.Fuzz(func(t *testing.T, s string) {
		// s as a stream name: a valid one maps to a clean local path that
		// maps back to it.
		if err := ValidateName(s); err == nil {
			p := Path(s)
			if !filepath.IsLocal(p) {
				t.Fatalf("Path(%q) = %q is not local", s, p)
			}
			if p != filepath.Clean(p) {
				t.Fatalf("Path(%q) = %q is not clean", s, p)
			}
			for _, el := range strings.Split(p, string(filepath.Separator)) {
				if el == ".." || el == "." || el == "" {
					t.Fatalf("Path(%q) = %q has element %q", s, p, el)
				}
			}
			if !strings.HasSuffix(p, ".db") {
				t.Fatalf("Path(%q) = %q does not end in .db", s, p)
			}
			full := filepath.Clean(filepath.Join(dataDir, p))
			if !strings.HasPrefix(full, dataDir+string(filepath.Separator)) {
				t.Fatalf("Path(%q) joined to %q is %q, outside", s, dataDir, full)
			}
			if got, ok := NameFromPath(p); !ok || got != s {
				t.Fatalf("NameFromPath(Path(%q)) = %q, %v", s, got, ok)
			}
			if Namespace(s) != Tokens(s)[0] || !HasPrefix(s, Namespace(s)) {
				t.Fatalf("Namespace(%q) = %q disagrees with Tokens/HasPrefix", s, Namespace(s))
			}
			if len(Tokens(s)) > MaxTokens {
				t.Fatalf("Tokens(%q) has %d tokens", s, len(Tokens(s)))
			}
		} else if !errors.Is(err, ErrInvalidName) {
			t.Fatalf("ValidateName(%q) = %v, does not wrap ErrInvalidName", s, err)
		}
		// s as a path found on disk: only the one path of a valid name is
		// taken for a stream.
		if name, ok := NameFromPath(s); ok {
			if err := ValidateName(name); err != nil {
				t.Fatalf("NameFromPath(%q) = %q, invalid: %v", s, name, err)
			}
			if got := Path(name); got != s {
				t.Fatalf("Path(NameFromPath(%q)) = %q", s, got)
			}
		}
		// s as a request subject: whatever parses rebuilds the same subject.
		if op, stream, err := ParseAPI(DefaultPrefix, s); err == nil {
			if got := APISubject(DefaultPrefix, op, stream); got != s {
				t.Fatalf("APISubject(ParseAPI(%q)) = %q", s, got)
			}
		}
		if stream, err := ParseEvent(DefaultPrefix, s); err == nil {
			if got := EventSubject(DefaultPrefix, stream); got != s {
				t.Fatalf("EventSubject(ParseEvent(%q)) = %q", s, got)
			}
		}
	})
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "a", "a.txt", "..", ".", "%", "%41", "%2E", "café", "\x00\xff", "a b*>", strings.Repeat(".", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := Escape(s)
		if got, err := Unescape(tok); err != nil || got != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, got, err)
		}
		if err := ValidateToken(tok); (err == nil) != (s != "" && len(tok) <= MaxTokenLen) {
			t.Fatalf("ValidateToken(Escape(%q) = %q) = %v", s, tok, err)
		}
		// s as a spelling: a token has exactly one, so decoding and encoding
		// again gives it back.
		if seg, err := Unescape(s); err == nil {
			if got := Escape(seg); got != s {
				t.Fatalf("Escape(Unescape(%q)) = %q", s, got)
			}
		}
		if ValidateToken(s) == nil {
			if _, err := Unescape(s); err != nil {
				t.Fatalf("ValidateToken(%q) ok but Unescape fails: %v", s, err)
			}
		}
	})
}

func FuzzHeader(f *testing.F) {
	for _, s := range []string{"Persist-TTL", "persist-ttl", "Nats-Msg-Id", "X-A", "90", "90s", "-1s", "0", "1e3s", "Persist-\u212Aey"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		switch k := ClassifyHeader(s); k {
		case HeaderRequest:
			if s != HeaderKey && s != HeaderPreviousSeq && s != HeaderMsgID && s != HeaderTTL {
				t.Fatalf("ClassifyHeader(%q) = %v", s, k)
			}
		case HeaderUser:
			l := strings.ToLower(s)
			if strings.HasPrefix(l, "persist-") || strings.HasPrefix(l, "nats-") {
				t.Fatalf("ClassifyHeader(%q) = %v, would store a reserved name", s, k)
			}
		case HeaderIgnored, HeaderBad:
		default:
			t.Fatalf("ClassifyHeader(%q) = %v", s, k)
		}
		if d, err := ParseTTL(s); err == nil && (d <= 0 || d > MaxTTL) {
			t.Fatalf("ParseTTL(%q) = %v, out of range", s, d)
		}
		if ValidateKey(s) == nil && (len(s) == 0 || len(s) > MaxKeyLen || strings.Trim(s, " \t\r\n\v\f") != s) {
			t.Fatalf("ValidateKey(%q) accepted", s)
		}
	})
}
