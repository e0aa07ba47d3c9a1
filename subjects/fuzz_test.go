package subjects

import (
	"encoding/json"
	"errors"
	"net/textproto"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
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

// FuzzHeader checks ClassifyHeader against the rules of PROTOCOL.md
// section 4: the four request names exactly, the worker's output names and
// Nats- names in any ASCII letter case are dropped, any other Persist-
// name is refused, and every other name is stored, so it must be one that
// NATS clients send again (nats.go refuses printable ASCII outside
// [!-~] and `"(),/:;<=>?@[\]{}`, and read "Status" as the server's).
func FuzzHeader(f *testing.F) {
	for _, s := range []string{"Persist-TTL", "persist-ttl", "Nats-Msg-Id", "X-A", "90", "Persist-\u212Aey", "Persist-Key",
		"Persist-Previous-Seq", "Persist-Msg-Id", "PERSIST-SEQ", "persist-next-seq", "Persist-Sync", "Persist-", "Nats-", "NATS-X",
		"", " ", "X A", "X:A", "X\x00", "\x7f", "é", "Persist-Seq ", "X_A", "X.A", "X!#$%&'*+-.^_`|~A", "Status", "STATUS", "Statuses"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := HeaderUser
		lower := strings.ToLower(s)
		switch {
		case s == "" || strings.EqualFold(s, "Status") || strings.ContainsFunc(s, func(r rune) bool { return r < '!' || r > '~' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) }):
			want = HeaderBad
		case s == HeaderKey || s == HeaderPreviousSeq || s == HeaderMsgID || s == HeaderTTL:
			want = HeaderRequest
		case strings.HasPrefix(lower, "nats-"):
			want = HeaderIgnored
		case strings.HasPrefix(lower, "persist-"):
			want = HeaderBad
			for _, h := range []string{HeaderSeq, HeaderTime, HeaderExpires, HeaderOp, HeaderRevision, HeaderReason, HeaderEnd, HeaderLastSeq, HeaderNumPending, HeaderNextSeq} {
				if lower == strings.ToLower(h) {
					want = HeaderIgnored
				}
			}
		}
		if got := ClassifyHeader(s); got != want {
			t.Fatalf("ClassifyHeader(%q) = %v, want %v", s, got, want)
		}
	})
}

// FuzzParseAPI checks how a request subject is read under any valid
// prefix: a request of a known operation and a valid stream, a known
// operation with a missing or invalid stream (ErrInvalidName, answered 400
// invalid_stream and counted against op), or not a request of this prefix
// at all (ErrUnknownSubject), and nothing else.
func FuzzParseAPI(f *testing.F) {
	for _, s := range []string{
		"persist.api.get.acme", "persist.api.get", "persist.api.get.", "persist.api.get..x", "persist.api.get.acme.",
		"persist.api.get.*", "persist.api.get.>", "persist.api.*.acme", "persist.api.>", "persist.api.getx.acme",
		"persist.api.GET.acme", "persist.api.get.%2e", "persist.api.get.%2E%2E", "persist.api.get...", "persist.api",
		"persist.api.", "persist.ev.acme", "persist", "", "persistx.api.get.acme", "app.persist.api.get.acme",
		"persist.api.set.acme.notes%2Etxt", "persist.api.list.acme", "persist.api.get.acme\x00", "persist.api.get.a b",
	} {
		f.Add(DefaultPrefix, s)
	}
	f.Add("app.persist", "app.persist.api.keys.acme")
	f.Add("app", "app.api.config.a.b")
	f.Fuzz(func(t *testing.T, prefix, subject string) {
		if ValidatePrefix(prefix) != nil {
			prefix = DefaultPrefix
		}
		op, stream, err := ParseAPI(prefix, subject)
		rest, isAPI := strings.CutPrefix(subject, prefix+".api.")
		tok, name, _ := strings.Cut(rest, ".")
		switch {
		case err == nil:
			if !ValidOp(op) || ValidateName(stream) != nil || APISubject(prefix, op, stream) != subject {
				t.Fatalf("ParseAPI(%q, %q) = %q, %q: not a request it rebuilds", prefix, subject, op, stream)
			}
		case errors.Is(err, ErrInvalidName):
			if errors.Is(err, ErrUnknownSubject) || !isAPI || op != tok || !ValidOp(op) || stream != "" || ValidateName(name) == nil {
				t.Fatalf("ParseAPI(%q, %q) = %q, %q, %v: wrong invalid stream", prefix, subject, op, stream, err)
			}
		case errors.Is(err, ErrUnknownSubject):
			if op != "" || stream != "" || isAPI && ValidOp(tok) {
				t.Fatalf("ParseAPI(%q, %q) = %q, %q, %v: a request of a known operation", prefix, subject, op, stream, err)
			}
		default:
			t.Fatalf("ParseAPI(%q, %q) = %v, neither invalid name nor unknown subject", prefix, subject, err)
		}
		// The worker subscribes to <prefix>.api.<op>.> and <prefix>.api.*,
		// where a NATS wildcard matches whole tokens only: a subject it
		// reads as a request has no empty token and no wildcard.
		if err == nil {
			for tok := range strings.SplitSeq(subject, ".") {
				if tok == "" || tok == "*" || tok == ">" {
					t.Fatalf("ParseAPI(%q, %q) accepted token %q", prefix, subject, tok)
				}
			}
		}
	})
}

// FuzzPrefix checks ValidatePrefix, and that under a valid prefix every
// request and event subject of a valid name reads back as it was built.
func FuzzPrefix(f *testing.F) {
	for _, p := range []string{DefaultPrefix, "app.persist", "a", "", ".", "a.", ".a", "a..b", "*", ">", "a.*", "a b", "a=b", "a%2E", strings.Repeat("a", MaxPrefixLen+1)} {
		f.Add(p, "acme.docs")
	}
	f.Fuzz(func(t *testing.T, prefix, name string) {
		if err := ValidatePrefix(prefix); err != nil {
			return
		}
		if len(prefix) > MaxPrefixLen {
			t.Fatalf("ValidatePrefix(%q) accepted %d bytes", prefix, len(prefix))
		}
		for tok := range strings.SplitSeq(prefix, ".") {
			if tok == "" || strings.ContainsAny(tok, "*> \t\r\n%=") {
				t.Fatalf("ValidatePrefix(%q) accepted token %q", prefix, tok)
			}
		}
		if ValidateName(name) != nil {
			return
		}
		for _, op := range Ops {
			if gotOp, gotName, err := ParseAPI(prefix, APISubject(prefix, op, name)); err != nil || gotOp != op || gotName != name {
				t.Fatalf("ParseAPI(%q, APISubject(%q, %q)) = %q, %q, %v", prefix, op, name, gotOp, gotName, err)
			}
		}
		if got, err := ParseEvent(prefix, EventSubject(prefix, name)); err != nil || got != name {
			t.Fatalf("ParseEvent(EventSubject(%q, %q)) = %q, %v", prefix, name, got, err)
		}
	})
}

// FuzzTTL checks ParseTTL against the rule of Persist-TTL: a positive Go
// duration or a positive integer of seconds, at most MaxTTL, in at most 64
// bytes.
func FuzzTTL(f *testing.F) {
	for _, s := range []string{"90", "90s", "1500ms", "2h", "1h30m", "0", "0s", "-1s", "+1s", "1e3", "1.5", "1.5s", "007", "",
		" 90", "90 ", "9223372036854775807", "9223372036854775808", "3153600000", "3153600001", "876000h", "876001h", "1ns", ".5s", "1µs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTTL(s)
		var want time.Duration
		ok := s != "" && len(s) <= 64
		if strings.Trim(s, "0123456789") == "" {
			n, perr := strconv.ParseUint(s, 10, 64)
			ok = ok && perr == nil && n >= 1 && n <= uint64(MaxTTL/time.Second)
			want = time.Duration(n) * time.Second
		} else {
			d, perr := time.ParseDuration(s)
			ok = ok && perr == nil && d > 0 && d <= MaxTTL
			want = d
		}
		if ok != (err == nil) || ok && got != want {
			t.Fatalf("ParseTTL(%q) = %v, %v; want %v, accepted %v", s, got, err, want, ok)
		}
	})
}

// FuzzKey checks ValidateKey against the key rule of PROTOCOL.md section 4
// (1 to 1024 bytes of UTF-8, no control characters, no ASCII white space
// at either end), and that an accepted key survives a NATS header, whose
// clients trim white space around a value and cannot carry a line break,
// and a JSON string.
func FuzzKey(f *testing.F) {
	for _, s := range []string{"k", "", " padded ", "padded ", " padded", "a b", "a\tb", "\ta", "a\r", "a\nb", "a\x00b", "\x7f",
		"é", "\xff", "\u0085", "a\u0085", "\u00a0a", "\u2028", "a\u200b", strings.Repeat("k", MaxKeyLen), strings.Repeat("k", MaxKeyLen+1),
		strings.Repeat("é", MaxKeyLen/2), "a\vb", "\fa", "a.b*>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ok := s != "" && len(s) <= MaxKeyLen && utf8.ValidString(s) &&
			!strings.ContainsAny(s[:1]+s[len(s)-1:], " \t\n\v\f\r") && !strings.ContainsFunc(s, unicode.IsControl)
		if err := ValidateKey(s); ok != (err == nil) {
			t.Fatalf("ValidateKey(%q) = %v, want accepted %v", s, err, ok)
		}
		if !ok {
			return
		}
		if textproto.TrimString(s) != s || strings.ContainsAny(s, "\r\n") {
			t.Fatalf("ValidateKey(%q) accepted a key a NATS header would change", s)
		}
		b, err := json.Marshal(s)
		var back string
		if err != nil || json.Unmarshal(b, &back) != nil || back != s {
			t.Fatalf("key %q does not survive JSON: %s -> %q", s, b, back)
		}
	})
}
