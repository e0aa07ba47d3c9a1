package subjects

import (
	"strings"
	"testing"
	"time"
)

func TestClassifyHeader(t *testing.T) {
	tests := []struct {
		name string
		want HeaderKind
	}{
		{"Content-Type", HeaderUser},
		{"X-Trace", HeaderUser},
		{"persistent", HeaderUser},
		{"Persist", HeaderUser},
		{"Nats", HeaderUser},
		{"PersistKey", HeaderUser},
		{HeaderKey, HeaderRequest},
		{HeaderPreviousSeq, HeaderRequest},
		{HeaderMsgID, HeaderRequest},
		{HeaderTTL, HeaderRequest},
		{"Nats-Msg-Id", HeaderIgnored},
		{"nats-expected-stream", HeaderIgnored},
		{"NATS-Anything", HeaderIgnored},
		{"Nats-", HeaderIgnored},
		{HeaderSeq, HeaderIgnored},
		{HeaderTime, HeaderIgnored},
		{HeaderExpires, HeaderIgnored},
		{HeaderOp, HeaderIgnored},
		{HeaderRevision, HeaderIgnored},
		{HeaderReason, HeaderIgnored},
		{HeaderEnd, HeaderIgnored},
		{HeaderLastSeq, HeaderIgnored},
		{HeaderNumPending, HeaderIgnored},
		{HeaderNextSeq, HeaderIgnored},
		{"persist-seq", HeaderIgnored},
		{"PERSIST-NUM-PENDING", HeaderIgnored},
		{"pErSiSt-TiMe", HeaderIgnored},
		{"persist-key", HeaderBad},
		{"PERSIST-TTL", HeaderBad},
		{"Persist-Msg-ID", HeaderBad},
		{"Persist-Previous-seq", HeaderBad},
		{"Persist-Foo", HeaderBad},
		// An extension outside PROTOCOL.md: the rule for any other name.
		{HeaderWorker, HeaderBad},
		{"persist-", HeaderBad},
		{"Persist-Seqs", HeaderBad},
		{"Persist-Seq ", HeaderBad},
		{"", HeaderBad},
		{"X Trace", HeaderBad},
		{"X:Trace", HeaderBad},
		{"X-Tr\x00ce", HeaderBad},
		{"X-Tr\nce", HeaderBad},
		{"X-Tr\x7fce", HeaderBad},
		{"X-Träce", HeaderBad},
		// U+212A KELVIN SIGN folds to 'k' under Unicode rules, but the
		// protocol's prefixes are matched in ASCII only.
		{"Persist-\u212Aey", HeaderBad},
		{"Nat\u017F-Id", HeaderBad},
	}
	for _, tt := range tests {
		if got := ClassifyHeader(tt.name); got != tt.want {
			t.Errorf("ClassifyHeader(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHeaderKind_String(t *testing.T) {
	tests := []struct {
		k    HeaderKind
		want string
	}{
		{HeaderUser, "user"},
		{HeaderRequest, "request"},
		{HeaderIgnored, "ignored"},
		{HeaderBad, "bad"},
		{HeaderKind(9), "HeaderKind(9)"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("HeaderKind(%d).String() = %q, want %q", int(tt.k), got, tt.want)
		}
	}
}

func TestParseTTL(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"1500ms", 1500 * time.Millisecond, false},
		{"90s", 90 * time.Second, false},
		{"2h", 2 * time.Hour, false},
		{"1h30m", 90 * time.Minute, false},
		{"1ns", 1, false},
		{"90", 90 * time.Second, false},
		{"1", time.Second, false},
		{"007", 7 * time.Second, false},
		{"3153600000", MaxTTL, false},
		{"876000h", MaxTTL, false},
		{"", 0, true},
		{"0", 0, true},
		{"0s", 0, true},
		{"-1", 0, true},
		{"-5s", 0, true},
		{"1.5", 0, true},
		{"3153600001", 0, true},
		{"876000h1ns", 0, true},
		{"9223372036854775807", 0, true},
		{"99999999999999999999999", 0, true},
		{"2562047h48m", 0, true},
		{"10d", 0, true},
		{"s", 0, true},
		{" 90s", 0, true},
		{"90s ", 0, true},
		{"ten", 0, true},
		{strings.Repeat("1", 100) + "s", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseTTL(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseTTL(%q) = %v, %v, want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestValidateKey(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"Simple", "user:42", true},
		{"InnerSpace", "a b", true},
		{"UTF8", "ключ/日本", true},
		{"Max", strings.Repeat("k", MaxKeyLen), true},
		{"Dots", "a.b.c", true},
		{"Empty", "", false},
		{"TooLong", strings.Repeat("k", MaxKeyLen+1), false},
		{"LeadingSpace", " a", false},
		{"TrailingSpace", "a ", false},
		{"TrailingTab", "a\t", false},
		{"InnerTab", "a\tb", false},
		{"Newline", "a\nb", false},
		{"NUL", "a\x00b", false},
		{"DEL", "a\x7fb", false},
		{"C1Control", "a\u0085b", false},
		{"InvalidUTF8", "a\xffb", false},
		{"TruncatedUTF8", "\xe6\x97", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateKey(tt.in); (err == nil) != tt.ok {
				t.Fatalf("ValidateKey(%.40q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}
