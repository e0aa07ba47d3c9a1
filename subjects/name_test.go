package subjects

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestValidateToken(t *testing.T) {
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"Letters", "acme", true},
		{"AllPlainBytes", "AZaz09_=-", true},
		{"EscapedDot", "a%2Etxt", true},
		{"EscapedDotDot", "%2E%2E", true},
		{"EscapedPercent", "100%25", true},
		{"EscapedSlash", "a%2Fb", true},
		{"EscapedNUL", "%00", true},
		{"EscapedHighByte", "%FF", true},
		{"EscapedUTF8", "caf%C3%A9", true},
		{"EscapedSpace", "a%20b", true},
		{"EscapedStar", "%2A", true},
		{"Max", strings.Repeat("a", MaxTokenLen), true},
		{"MaxWithEscapes", strings.Repeat("%2E", 66) + "ab", true},
		{"Empty", "", false},
		{"TooLong", strings.Repeat("a", MaxTokenLen+1), false},
		{"TooLongByEscape", strings.Repeat("a", MaxTokenLen-2) + "%2E", false},
		{"RawDot", "a.b", false},
		{"RawDotDot", "..", false},
		{"RawSlash", "a/b", false},
		{"RawBackslash", `a\b`, false},
		{"LowerHex", "a%2etxt", false},
		{"MixedCaseHex", "%c3%A9", false},
		{"EscapesPlainLetter", "%41", false},
		{"EscapesPlainDigit", "%30", false},
		{"EscapesUnderscore", "%5F", false},
		{"EscapesEquals", "%3D", false},
		{"EscapesDash", "%2D", false},
		{"PercentAtEnd", "abc%", false},
		{"PercentOneDigit", "abc%2", false},
		{"PercentNonHex", "%G0", false},
		{"PercentPercent", "%%25", false},
		{"RawNonASCII", "café", false},
		{"RawHighByte", "\xff", false},
		{"RawNUL", "a\x00", false},
		{"Star", "*", false},
		{"GreaterThan", ">", false},
		{"Space", "a b", false},
		{"Tab", "a\tb", false},
		{"Newline", "a\nb", false},
		{"Plus", "a+b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateToken(tt.tok)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ValidateToken(%q) = %v, want ok=%v", tt.tok, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ValidateToken(%q) = %v, does not wrap ErrInvalidName", tt.tok, err)
			}
		})
	}
}

// nameOfLen builds a valid name of exactly n bytes from tokens of up to
// MaxTokenLen bytes.
func nameOfLen(tb testing.TB, n int) string {
	tb.Helper()
	var toks []string
	for n > 0 {
		l := min(n, MaxTokenLen)
		if n-l == 1 { // a lone byte left would need a dot and an empty token
			l--
		}
		toks = append(toks, strings.Repeat("x", l))
		n -= l + 1
	}
	name := strings.Join(toks, ".")
	return name
}

func TestValidateName(t *testing.T) {
	name320 := nameOfLen(t, MaxNameLen)
	if len(name320) != MaxNameLen {
		t.Fatalf("nameOfLen(%d) has %d bytes", MaxNameLen, len(name320))
	}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"OneToken", "acme", true},
		{"SeveralTokens", "acme.projects.3fa2b1.notes%2Etxt", true},
		{"EscapedDotDot", "acme.%2E%2E", true},
		{"SixteenTokens", strings.Repeat("a.", MaxTokens-1) + "a", true},
		{"MaxBytes", name320, true},
		{"MaxToken", strings.Repeat("a", MaxTokenLen), true},
		{"Empty", "", false},
		{"OnlyDot", ".", false},
		{"DoubleDot", "a..b", false},
		{"LeadingDot", ".a", false},
		{"TrailingDot", "a.", false},
		{"SeventeenTokens", strings.Repeat("a.", MaxTokens) + "a", false},
		{"TooManyBytes", name320 + "x", false},
		{"TokenTooLong", "a." + strings.Repeat("b", MaxTokenLen+1), false},
		{"LowerHex", "acme.a%2etxt", false},
		{"EscapesPlain", "acme.%41", false},
		{"PercentAtEnd", "acme.a%", false},
		{"RawNonASCII", "acme.café", false},
		{"EscapedNonASCII", "acme.caf%C3%A9", true},
		{"Star", "acme.*", false},
		{"GreaterThan", "acme.>", false},
		{"Space", "acme docs", false},
		{"TrailingSpace", "acme ", false},
		{"Slash", "acme/docs", false},
		{"Huge", strings.Repeat("a", 1<<20), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.in)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ValidateName(%.40q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ValidateName(%.40q) = %v, does not wrap ErrInvalidName", tt.in, err)
			}
			if err != nil && len(err.Error()) > 400 {
				t.Fatalf("ValidateName(%.40q) error is %d bytes, want it bounded", tt.in, len(err.Error()))
			}
		})
	}
}

func TestEscape(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"acme", "acme"},
		{"AZaz09_=-", "AZaz09_=-"},
		{"a.txt", "a%2Etxt"},
		{"..", "%2E%2E"},
		{".", "%2E"},
		{"a/b", "a%2Fb"},
		{"100%", "100%25"},
		{"%41", "%2541"},
		{"a b", "a%20b"},
		{"*", "%2A"},
		{">", "%3E"},
		{"café", "caf%C3%A9"},
		{"\x00\xff", "%00%FF"},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{"Plain", "acme", "acme", false},
		{"Empty", "", "", false},
		{"Dot", "a%2Etxt", "a.txt", false},
		{"DotDot", "%2E%2E", "..", false},
		{"Percent", "100%25", "100%", false},
		{"PercentThenHex", "%2541", "%41", false},
		{"UTF8", "caf%C3%A9", "café", false},
		{"Bytes", "%00%FF", "\x00\xff", false},
		{"LongerThanAToken", strings.Repeat("%2E", 100), strings.Repeat(".", 100), false},
		{"LowerHex", "a%2etxt", "", true},
		{"EscapesPlain", "%41", "", true},
		{"PercentAtEnd", "a%", "", true},
		{"PercentOneDigit", "a%2", "", true},
		{"RawDot", "a.txt", "", true},
		{"RawNonASCII", "café", "", true},
		{"Star", "*", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Unescape(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Unescape(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("Unescape(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("Unescape(%q) = %v, does not wrap ErrInvalidName", tt.in, err)
			}
		})
	}
}

func TestNamespace(t *testing.T) {
	tests := []struct{ in, want string }{
		{"acme", "acme"},
		{"acme.docs", "acme"},
		{"acme.projects.x%2Ey", "acme"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Namespace(tt.in); got != tt.want {
			t.Errorf("Namespace(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTokens(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"acme", []string{"acme"}},
		{"acme.docs.a%2Eb", []string{"acme", "docs", "a%2Eb"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := Tokens(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Tokens(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"acme", "acme.db"},
		{"a.b.c", filepath.Join("a", "b", "c.db")},
		{"acme.%2E%2E", filepath.Join("acme", "%2E%2E.db")},
		{"acme.a%2Fb", filepath.Join("acme", "a%2Fb.db")},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Path(tt.in); got != tt.want {
			t.Errorf("Path(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNameFromPath(t *testing.T) {
	tests := []struct {
		name string
		rel  string
		want string
		ok   bool
	}{
		{"OneToken", "acme.db", "acme", true},
		{"Nested", filepath.Join("a", "b", "c.db"), "a.b.c", true},
		{"Escaped", filepath.Join("acme", "%2E%2E.db"), "acme.%2E%2E", true},
		{"DottedFile", "a.b.db", "", false},
		{"Wal", "acme.db-wal", "", false},
		{"Journal", "acme.db-journal", "", false},
		{"OtherExt", "acme.sqlite", "", false},
		{"OnlyExt", ".db", "", false},
		{"DirOnlyExt", filepath.Join("acme", ".db"), "", false},
		{"Empty", "", "", false},
		{"Absolute", string(filepath.Separator) + "acme.db", "", false},
		{"DoubleSeparator", "a" + string(filepath.Separator) + string(filepath.Separator) + "b.db", "", false},
		{"TrailingSeparator", "a" + string(filepath.Separator) + "b.db" + string(filepath.Separator), "", false},
		{"DotDir", filepath.Join(".", "x") + string(filepath.Separator) + "." + string(filepath.Separator) + "a.db", "", false},
		{"DotDotDir", ".." + string(filepath.Separator) + "a.db", "", false},
		{"InvalidToken", filepath.Join("acme", "a b.db"), "", false},
		{"LowerHex", filepath.Join("acme", "a%2e.db"), "", false},
		{"TooDeep", strings.Repeat("a"+string(filepath.Separator), MaxTokens) + "a.db", "", false},
		{"TooLong", filepath.Join(strings.Repeat("a", 200), strings.Repeat("b", 120)) + ".db", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NameFromPath(tt.rel)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("NameFromPath(%q) = %q, %v, want %q, %v", tt.rel, got, ok, tt.want, tt.ok)
			}
			if ok {
				if back := Path(got); back != tt.rel {
					t.Fatalf("Path(%q) = %q, want %q", got, back, tt.rel)
				}
			}
		})
	}
}

func TestHasPrefix(t *testing.T) {
	tests := []struct {
		name, prefix string
		want         bool
	}{
		{"acme.x", "acme", true},
		{"acme", "acme", true},
		{"acme.x.y", "acme.x", true},
		{"acmecorp.x", "acme", false},
		{"acme.xy", "acme.x", false},
		{"acme", "acme.x", false},
		{"acm", "acme", false},
		{"acme", "", false},
		{"", "", false},
		{"acme.x", "acme.", false},
	}
	for _, tt := range tests {
		if got := HasPrefix(tt.name, tt.prefix); got != tt.want {
			t.Errorf("HasPrefix(%q, %q) = %v, want %v", tt.name, tt.prefix, got, tt.want)
		}
	}
}

func TestValidateToken_ByteMessage(t *testing.T) {
	tests := []struct{ tok, want string }{
		{"\xc3\xa9", `byte 0xC3 at 0 must be escaped as %C3`},
		{"caf\xc3\xa9", `byte 0xC3 at 3 must be escaped as %C3`},
		{"a.b", `byte '.' (0x2E) at 1 must be escaped as %2E`},
		{"a b", `byte 0x20 at 1 must be escaped as %20`},
		{"a\x00", `byte 0x00 at 1 must be escaped as %00`},
		{"\x7f", `byte 0x7F at 0 must be escaped as %7F`},
	}
	for _, tt := range tests {
		err := ValidateToken(tt.tok)
		if err == nil || !strings.HasSuffix(err.Error(), tt.want) {
			t.Errorf("ValidateToken(%q) = %v, want it to end in %q", tt.tok, err, tt.want)
		}
	}
}
