package subjects

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		ok   bool
	}{
		{"Default", func(*Config) {}, true},
		{"MaxMsgsPositive", func(c *Config) { c.MaxMsgs = 1 }, true},
		{"MaxMsgsZero", func(c *Config) { c.MaxMsgs = 0 }, false},
		{"MaxBytesMinusTwo", func(c *Config) { c.MaxBytes = -2 }, false},
		{"MaxMsgSizeZero", func(c *Config) { c.MaxMsgSize = 0 }, false},
		{"RateZero", func(c *Config) { c.MaxMsgsPerSecond = 0 }, false},
		{"BytesRateNegative", func(c *Config) { c.MaxBytesPerSecond = -5 }, false},
		{"MaxAgeNegative", func(c *Config) { c.MaxAge = -1 }, false},
		{"MaxAgeHuge", func(c *Config) { c.MaxAge = 1 << 62 }, false},
		{"WindowZero", func(c *Config) { c.DuplicateWindow = 0 }, true},
		{"ThresholdNegative", func(c *Config) { c.CompressionThreshold = -1 }, false},
		{"Discard", func(c *Config) { c.DiscardPolicy = "newest" }, false},
		{"Storage", func(c *Config) { c.Storage = "disk" }, false},
		{"Memory", func(c *Config) { c.Storage = StorageMemory }, true},
		{"Compression", func(c *Config) { c.Compression = "gzip" }, false},
		{"DescObject", func(c *Config) { c.Desc = json.RawMessage(`{"a":[1,2]}`) }, true},
		{"DescInvalid", func(c *Config) { c.Desc = json.RawMessage(`{`) }, false},
		{"DescTooLarge", func(c *Config) { c.Desc = json.RawMessage(`"` + strings.Repeat("x", MaxDescBytes) + `"`) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mut(&c)
			err := c.Validate()
			if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrBadRequest) {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestParseConfigPatch(t *testing.T) {
	tests := []struct {
		name string
		body string
		want func(*Config) // nil: ErrBadRequest
	}{
		{"EmptyObject", `{}`, func(*Config) {}},
		{"Some", `{"max_msgs":10,"discard_policy":"new","sync":true}`, func(c *Config) { c.MaxMsgs, c.DiscardPolicy, c.Sync = 10, DiscardNew, true }},
		{"Desc", `{"desc": {"a" : 1}}`, func(c *Config) { c.Desc = json.RawMessage(`{"a":1}`) }},
		{"DescNull", `{"desc":null}`, func(*Config) {}},
		{"Whitespace", " {\"max_age\": 5}\n", func(c *Config) { c.MaxAge = 5 }},
		{"Unknown", `{"max_msg":1}`, nil},
		{"WrongCase", `{"MAX_MSGS":1}`, nil},
		{"WrongType", `{"max_msgs":"1"}`, nil},
		{"Float", `{"max_msgs":1.5}`, nil},
		{"Null", `{"max_msgs":null}`, nil},
		{"Trailing", `{"max_msgs":1} {}`, nil},
		{"TrailingGarbage", `{"max_msgs":1}x`, nil},
		{"Array", `[]`, nil},
		{"NullBody", `null`, nil},
		{"Empty", ``, nil},
		{"Invalid", `{"max_msgs":0}`, nil},
		{"BadJSON", `{"max_msgs":`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfigPatch(DefaultConfig(), []byte(tt.body))
			if tt.want == nil {
				if !errors.Is(err, ErrBadRequest) {
					t.Fatalf("ParseConfigPatch(%q) = %+v, %v; want ErrBadRequest", tt.body, got, err)
				}
				return
			}
			want := DefaultConfig()
			tt.want(&want)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("ParseConfigPatch(%q) = %+v, %v; want %+v", tt.body, got, err, want)
			}
		})
	}
}

func TestConfig_NonDefault(t *testing.T) {
	if got := DefaultConfig().NonDefault(); len(got) != 0 {
		t.Fatalf("NonDefault() of the defaults = %v", got)
	}
	c := DefaultConfig()
	c.MaxMsgs = 5
	c.AllowMsgTTL = true
	c.Storage = StorageMemory
	c.Desc = json.RawMessage(`"hi"`)
	want := map[string]any{"max_msgs": int64(5), "allow_msg_ttl": true, "storage": "memory", "desc": json.RawMessage(`"hi"`)}
	if got := c.NonDefault(); !reflect.DeepEqual(got, want) {
		t.Fatalf("NonDefault() = %v, want %v", got, want)
	}
}

func TestConfig_JSON(t *testing.T) {
	b, err := json.Marshal(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msg_size":-1,"max_msgs_per_second":-1,"max_bytes_per_second":-1,"discard_policy":"old","allow_msg_ttl":false,"duplicate_window":120000,"sync":false,"storage":"file","compression":"zstd","compression_threshold":1024,"desc":null}`
	if string(b) != want {
		t.Fatalf("default config JSON =\n%s\nwant\n%s", b, want)
	}
}
