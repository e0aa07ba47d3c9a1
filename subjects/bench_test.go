package subjects

import "testing"

func BenchmarkParseAPI(b *testing.B) {
	const subject = "persist.api.set.acme.projects.3fa2b1.notes%2Etxt"
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseAPI(DefaultPrefix, subject); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClassifyHeader(b *testing.B) {
	names := []string{"Content-Type", HeaderKey, "persist-seq", "Nats-Msg-Id"}
	b.ReportAllocs()
	for b.Loop() {
		for _, n := range names {
			ClassifyHeader(n)
		}
	}
}

func BenchmarkEscape(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Escape("notes for 2025.txt")
	}
}
