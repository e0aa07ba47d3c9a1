package subjects

import (
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestPartition(t *testing.T) {
	tests := []struct {
		stream     string
		partitions int
		want       int
	}{
		// FNV-1a of "acme" is 1174237615: 7 of 8, 1 of 3, 431 of 1024.
		{"acme", 8, 7},
		{"acme.docs", 8, 7},
		{"acme.projects.3fa2b1.notes%2Etxt", 8, 7},
		{"acme", 3, 1},
		{"acme", MaxPartitions, 431},
		{"globex.x", 8, 6},
		// The escaped spelling is hashed, as the server sees the token.
		{"%2E%2E.a", 8, 5},
		{"x=y", 8, 5},
		{"A-b_9", 8, 7},
		{"acme", 1, 0},
		{"acme", 0, 0},
		{"acme", -5, 0},
	}
	for _, tt := range tests {
		if got := Partition(tt.stream, tt.partitions); got != tt.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", tt.stream, tt.partitions, got, tt.want)
		}
	}
}

// TestPartition_FNV checks Partition against hash/fnv, the hash the NATS
// server's partition() uses, over random namespaces, and that every stream
// of a namespace lands with its namespace.
func TestPartition_FNV(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		name := RandomName(r)
		if err := ValidateName(name); err != nil {
			t.Fatalf("RandomName() = %q: %v", name, err)
		}
		ns := Namespace(name)
		n := 1 + r.IntN(MaxPartitions)
		h := fnv.New32a()
		h.Write([]byte(ns))
		want := int(h.Sum32() % uint32(n))
		if got := Partition(name, n); got != want {
			t.Fatalf("Partition(%q, %d) = %d, want %d", name, n, got, want)
		}
		if got := Partition(ns, n); got != want {
			t.Fatalf("Partition(%q, %d) = %d, not that of its stream %q", ns, n, got, name)
		}
	}
}

// RandomName returns a valid stream name of 1 to MaxTokens tokens, with
// escapes, now and then a long namespace, within MaxNameLen. It is
// exported for the tests against real servers in package subjects_test.
func RandomName(r *rand.Rand) string {
	const alphabet = "abcXYZ019_=-"
	toks := make([]string, 1+r.IntN(MaxTokens))
	for i := range toks {
		size := 1 + r.IntN(6)
		if i == 0 && r.IntN(10) == 0 {
			size = MaxTokenLen
		}
		var b strings.Builder
		// An escape of a byte is 3 bytes, of a rune up to 12.
		for range size {
			if b.Len()+12 > MaxTokenLen {
				break
			}
			if r.IntN(5) == 0 {
				b.WriteString(Escape([]string{" ", ".", "/", "*", ">", "%", "é", "\x00"}[r.IntN(8)]))
				continue
			}
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		toks[i] = b.String()
	}
	name := strings.Join(toks, ".")
	for len(name) > MaxNameLen {
		name = name[:strings.LastIndexByte(name, '.')]
	}
	return name
}

func TestPartition_Spread(t *testing.T) {
	// Not a property of the hash to rely on, but a guard against a
	// function that ignores its input: 8000 namespaces over 8 partitions
	// leave none empty.
	var counts [8]int
	for i := range 8000 {
		counts[Partition("ns"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+Escape(string(rune(i))), 8)]++
	}
	for p, c := range counts {
		if c == 0 {
			t.Fatalf("partition %d of 8 got no namespace: %v", p, counts)
		}
	}
}

func TestValidatePartitions(t *testing.T) {
	for _, n := range []int{1, 8, MaxPartitions} {
		if err := ValidatePartitions(n); err != nil {
			t.Errorf("ValidatePartitions(%d) = %v", n, err)
		}
	}
	for _, n := range []int{0, -1, MaxPartitions + 1} {
		if err := ValidatePartitions(n); err == nil {
			t.Errorf("ValidatePartitions(%d) = nil, want an error", n)
		}
	}
}

func TestPartitionSubject(t *testing.T) {
	if got, want := PartitionSubject(DefaultPrefix, 3), "persist.part.3"; got != want {
		t.Fatalf("PartitionSubject() = %q, want %q", got, want)
	}
	if got, want := PartitionAPISubject("app.persist", 12, OpGet, "acme.docs"), "app.persist.part.12.api.get.acme.docs"; got != want {
		t.Fatalf("PartitionAPISubject() = %q, want %q", got, want)
	}
}

func TestPartitionMappings(t *testing.T) {
	got, err := PartitionMappings(DefaultPrefix, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"persist.api.*.*":   "persist.part.{{partition(8,2)}}.api.{{wildcard(1)}}.{{wildcard(2)}}",
		"persist.api.*.*.>": "persist.part.{{partition(8,2)}}.api.{{wildcard(1)}}.{{wildcard(2)}}.>",
	}
	if len(got) != len(want) {
		t.Fatalf("PartitionMappings() = %v, want %v", got, want)
	}
	for src, dest := range want {
		if got[src] != dest {
			t.Errorf("PartitionMappings()[%q] = %q, want %q", src, got[src], dest)
		}
	}
	got, err = PartitionMappings("app.persist", MaxPartitions)
	if err != nil {
		t.Fatal(err)
	}
	if d, want := got["app.persist.api.*.*.>"], "app.persist.part.{{partition(1024,2)}}.api.{{wildcard(1)}}.{{wildcard(2)}}.>"; d != want {
		t.Errorf("PartitionMappings(app.persist)[…>] = %q, want %q", d, want)
	}
	for _, bad := range []struct {
		prefix string
		n      int
	}{{"", 8}, {"persist.*", 8}, {"a b", 8}, {DefaultPrefix, 0}, {DefaultPrefix, -1}, {DefaultPrefix, MaxPartitions + 1}} {
		if m, err := PartitionMappings(bad.prefix, bad.n); err == nil {
			t.Errorf("PartitionMappings(%q, %d) = %v, want an error", bad.prefix, bad.n, m)
		}
	}
}

func TestParsePartitionAPI(t *testing.T) {
	tests := []struct {
		subject string
		part    int
		op      string
		stream  string
		err     error
	}{
		{"persist.part.7.api.get.acme", 7, OpGet, "acme", nil},
		{"persist.part.7.api.set.acme.projects.notes%2Etxt", 7, OpSet, "acme.projects.notes%2Etxt", nil},
		{"persist.part.7.api.list.acme", 7, OpList, "acme", nil},
		{"persist.part.6.api.keys.globex", 6, OpKeys, "globex", nil},
		// Published on a partition directly, not through the mapping.
		{"persist.part.3.api.get.acme", 3, OpGet, "acme", ErrWrongPartition},
		{"persist.part.7.api.get", 0, OpGet, "", ErrInvalidName},
		{"persist.part.7.api.get.", 0, OpGet, "", ErrInvalidName},
		{"persist.part.7.api.get.acme..x", 0, OpGet, "", ErrInvalidName},
		{"persist.part.7.api.get.*", 0, OpGet, "", ErrInvalidName},
		{"persist.part.7.api.fetch.acme", 0, "", "", ErrUnknownSubject},
		{"persist.part.7.api", 0, "", "", ErrUnknownSubject},
		{"persist.part.7.ev.acme", 0, "", "", ErrUnknownSubject},
		{"persist.part.8.api.get.acme", 0, "", "", ErrUnknownSubject},
		{"persist.part.07.api.get.acme", 0, "", "", ErrUnknownSubject},
		{"persist.part.-1.api.get.acme", 0, "", "", ErrUnknownSubject},
		{"persist.part.+7.api.get.acme", 0, "", "", ErrUnknownSubject},
		{"persist.part..api.get.acme", 0, "", "", ErrUnknownSubject},
		{"persist.part.*.api.get.acme", 0, "", "", ErrUnknownSubject},
		{"persist.part.99999999999999999999999.api.get.acme", 0, "", "", ErrUnknownSubject},
		{"persist.part.7", 0, "", "", ErrUnknownSubject},
		{"persist.api.get.acme", 0, "", "", ErrUnknownSubject},
		{"other.part.7.api.get.acme", 0, "", "", ErrUnknownSubject},
	}
	for _, tt := range tests {
		part, op, stream, err := ParsePartitionAPI(DefaultPrefix, tt.subject, 8)
		if part != tt.part || op != tt.op || stream != tt.stream || (tt.err == nil) != (err == nil) || tt.err != nil && !errors.Is(err, tt.err) {
			t.Errorf("ParsePartitionAPI(%q) = %d, %q, %q, %v; want %d, %q, %q, %v", tt.subject, part, op, stream, err, tt.part, tt.op, tt.stream, tt.err)
		}
	}
	if _, _, _, err := ParsePartitionAPI(DefaultPrefix, "persist.part.0.api.get.acme", 0); !errors.Is(err, ErrUnknownSubject) {
		t.Errorf("ParsePartitionAPI with 0 partitions = %v, want ErrUnknownSubject", err)
	}
}

func TestParsePartitions(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want []int
	}{
		{"0-7", 8, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"0-3,9", 10, []int{0, 1, 2, 3, 9}},
		{"9,0-3", 10, []int{0, 1, 2, 3, 9}},
		{"5", 8, []int{5}},
		{"5-5", 8, []int{5}},
		{" 1 , 3 - 4 ", 8, []int{1, 3, 4}},
		{"07", 8, []int{7}},
		{"0", 1, []int{0}},
		{"1023", MaxPartitions, []int{1023}},
	}
	for _, tt := range tests {
		got, err := ParsePartitions(tt.in, tt.n)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParsePartitions(%q, %d) = %v, %v; want %v", tt.in, tt.n, got, err, tt.want)
		}
	}
	bad := []struct{ s, msg string }{
		{s: "", msg: "no partitions"},
		{s: "  ", msg: "no partitions"},
		{s: "1,,2", msg: "empty item"},
		{s: "1,", msg: "empty item"},
		{s: "8", msg: "out of range: the deployment has partitions 0 to 7"},
		{s: "0-8", msg: "out of range"},
		{s: "99999999999999999999999", msg: "out of range"},
		{s: "7-3", msg: "runs backwards"},
		{s: "0-3,2", msg: "partition 2 given twice"},
		{s: "1,1", msg: "given twice"},
		{s: "-1", msg: `"" is not a partition number`},
		{s: "1-", msg: "not a partition number"},
		{s: "1-2-3", msg: `"2-3" is not a partition number`},
		{s: "+1", msg: "not a partition number"},
		{s: "a", msg: `"a" is not a partition number`},
		{s: "0x1", msg: "not a partition number"},
		{s: "1.5", msg: "not a partition number"},
	}
	for _, tt := range bad {
		got, err := ParsePartitions(tt.s, 8)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParsePartitions(%q, 8) = %v, %v; want an error with %q", tt.s, got, err, tt.msg)
		}
	}
	for _, n := range []int{0, MaxPartitions + 1} {
		if got, err := ParsePartitions("0", n); err == nil {
			t.Errorf("ParsePartitions(0, %d) = %v, want an error", n, got)
		}
	}
}

func TestFormatPartitions(t *testing.T) {
	tests := []struct {
		in   []int
		want string
	}{
		{nil, ""},
		{[]int{5}, "5"},
		{[]int{0, 1, 2, 3, 9}, "0-3,9"},
		{[]int{9, 3, 2, 1, 0, 2}, "0-3,9"},
		{[]int{1, 3, 5}, "1,3,5"},
		{[]int{1, 2, 4, 5}, "1-2,4-5"},
	}
	for _, tt := range tests {
		if got := FormatPartitions(tt.in); got != tt.want {
			t.Errorf("FormatPartitions(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParsePartitions checks that whatever ParsePartitions accepts is a
// set of partitions of the deployment, in order and without repeats, that
// FormatPartitions spells so that it reads back the same.
func FuzzParsePartitions(f *testing.F) {
	for _, s := range []string{"0-7", "0-3,9", "9,0-3", " 1 , 3 - 4 ", "", ",", "1,,2", "7-3", "0-3,2", "-1", "1-2-3", "+1", "07",
		"99999999999999999999", "0-1023", "1023-1023", "0,1,2,3", "\t5\n"} {
		f.Add(s, 8)
		f.Add(s, MaxPartitions)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		parts, err := ParsePartitions(s, n)
		if err != nil {
			if parts != nil {
				t.Fatalf("ParsePartitions(%q, %d) = %v with error %v", s, n, parts, err)
			}
			return
		}
		if ValidatePartitions(n) != nil || len(parts) == 0 {
			t.Fatalf("ParsePartitions(%q, %d) = %v, accepted", s, n, parts)
		}
		for i, p := range parts {
			if p < 0 || p >= n || i > 0 && parts[i-1] >= p {
				t.Fatalf("ParsePartitions(%q, %d) = %v: not increasing partitions below %d", s, n, parts, n)
			}
		}
		back, err := ParsePartitions(FormatPartitions(parts), n)
		if err != nil || !slices.Equal(back, parts) {
			t.Fatalf("ParsePartitions(FormatPartitions(%v) = %q) = %v, %v", parts, FormatPartitions(parts), back, err)
		}
	})
}

// FuzzParsePartitionAPI checks how a mapped request subject is read: an
// accepted one rebuilds the same subject and is on its stream's
// partition, the wrong partition is reported with the subject's parts,
// and nothing else is accepted.
func FuzzParsePartitionAPI(f *testing.F) {
	for _, s := range []string{
		"persist.part.7.api.get.acme", "persist.part.3.api.get.acme", "persist.part.7.api.get", "persist.part.07.api.get.acme",
		"persist.part.8.api.get.acme", "persist.part.-1.api.get.acme", "persist.part.7.api.fetch.acme", "persist.part.7",
		"persist.part..api.get.acme", "persist.part.7.api.set.acme.notes%2Etxt", "persist.api.get.acme", "persist.part.7.api.get.*",
	} {
		f.Add(DefaultPrefix, s, 8)
	}
	f.Add("app.persist", "app.persist.part.0.api.keys.a.b", 1)
	f.Fuzz(func(t *testing.T, prefix, subject string, n int) {
		if ValidatePrefix(prefix) != nil {
			prefix = DefaultPrefix
		}
		part, op, stream, err := ParsePartitionAPI(prefix, subject, n)
		switch {
		case err == nil || errors.Is(err, ErrWrongPartition):
			if !ValidOp(op) || ValidateName(stream) != nil || part < 0 || part >= n || PartitionAPISubject(prefix, part, op, stream) != subject {
				t.Fatalf("ParsePartitionAPI(%q, %q, %d) = %d, %q, %q, %v: not a request it rebuilds", prefix, subject, n, part, op, stream, err)
			}
			if onIt := Partition(stream, n) == part; onIt != (err == nil) {
				t.Fatalf("ParsePartitionAPI(%q, %q, %d) = %v, but Partition(%q, %d) = %d", prefix, subject, n, err, stream, n, Partition(stream, n))
			}
		case errors.Is(err, ErrInvalidName):
			if !ValidOp(op) || stream != "" {
				t.Fatalf("ParsePartitionAPI(%q, %q, %d) = %q, %q, %v: wrong invalid stream", prefix, subject, n, op, stream, err)
			}
		case errors.Is(err, ErrUnknownSubject):
			if part != 0 || op != "" || stream != "" {
				t.Fatalf("ParsePartitionAPI(%q, %q, %d) = %d, %q, %q, %v", prefix, subject, n, part, op, stream, err)
			}
		default:
			t.Fatalf("ParsePartitionAPI(%q, %q, %d) = %v, an unknown error", prefix, subject, n, err)
		}
	})
}

func BenchmarkPartition(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Partition("acme.projects.3fa2b1.notes%2Etxt", 8)
	}
}

func BenchmarkParsePartitionAPI(b *testing.B) {
	const subject = "persist.part.7.api.set.acme.projects.3fa2b1.notes%2Etxt"
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := ParsePartitionAPI(DefaultPrefix, subject, 8); err != nil {
			b.Fatal(err)
		}
	}
}
