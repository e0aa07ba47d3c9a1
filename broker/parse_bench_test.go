package broker

import (
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// BenchmarkParseJob measures parsing the common requests, as the handler
// does for every message.
func BenchmarkParseJob(b *testing.B) {
	for _, bc := range []struct {
		name, op, body string
		h              nats.Header
	}{
		{"GetSeq", subjects.OpGet, `{"seq":123456}`, nil},
		{"GetKey", subjects.OpGet, `{"key":"user.settings"}`, nil},
		{"GetAllNext", subjects.OpGetAll, `{"start_seq":1001,"max_msgs":1000}`, nil},
		{"Keys", subjects.OpKeys, `{"after":"k0999","limit":1000}`, nil},
		{"Set", subjects.OpSet, `0123456789abcdef`, nil},
		{"SetHeaders", subjects.OpSet, `0123456789abcdef`, nats.Header{
			subjects.HeaderKey: {"user.settings"}, subjects.HeaderMsgID: {"id-1"}, "Content-Type": {"text/plain"},
		}},
		{"SetMany100", subjects.OpSetMany, setManyBody(100), nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(bc.body)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseJob(bc.op, body, bc.h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// setManyBody is a setmany of n keyed 16-byte messages.
func setManyBody(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = `{"data":"MDEyMzQ1Njc4OWFiY2RlZg==","key":"k` + strconv.Itoa(i) + `"}`
	}
	return "[" + strings.Join(items, ",") + "]"
}
