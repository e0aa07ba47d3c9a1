package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestValidOp(t *testing.T) {
	if got, want := len(Ops), 12; got != want {
		t.Fatalf("len(Ops) = %d, want %d", got, want)
	}
	for _, op := range Ops {
		if !ValidOp(op) {
			t.Errorf("ValidOp(%q) = false, want true", op)
		}
	}
	for _, op := range []string{"", "SET", "Get", "api", "ev", "set.x", "*", ">", "getAll"} {
		if ValidOp(op) {
			t.Errorf("ValidOp(%q) = true, want false", op)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"persist", true},
		{"acme.persist", true},
		{"my_app-1.v2", true},
		{strings.Repeat("p", MaxPrefixLen), true},
		{"", false},
		{strings.Repeat("p", MaxPrefixLen+1), false},
		{"persist.", false},
		{".persist", false},
		{"a..b", false},
		{"persist.*", false},
		{"persist.>", false},
		{">", false},
		{"per sist", false},
		{"persist\t", false},
		{"per=sist", false},
		{"per%41sist", false},
		{"persißt", false},
	}
	for _, tt := range tests {
		if err := ValidatePrefix(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestAPISubject(t *testing.T) {
	if got, want := APISubject(DefaultPrefix, OpGet, "acme.docs"), "persist.api.get.acme.docs"; got != want {
		t.Fatalf("APISubject() = %q, want %q", got, want)
	}
	if got, want := APISubject("a.b", OpSetMany, "acme"), "a.b.api.setmany.acme"; got != want {
		t.Fatalf("APISubject() = %q, want %q", got, want)
	}
}

func TestEventSubject(t *testing.T) {
	if got, want := EventSubject(DefaultPrefix, "acme.docs"), "persist.ev.acme.docs"; got != want {
		t.Fatalf("EventSubject() = %q, want %q", got, want)
	}
}

func TestParseAPI(t *testing.T) {
	tests := []struct {
		name       string
		prefix     string
		subject    string
		wantOp     string
		wantStream string
		wantErr    error
	}{
		{"Get", "persist", "persist.api.get.acme", OpGet, "acme", nil},
		{"Nested", "persist", "persist.api.setmany.acme.docs.a%2Etxt", OpSetMany, "acme.docs.a%2Etxt", nil},
		{"StreamNamedLikeOp", "persist", "persist.api.list.get.set", OpList, "get.set", nil},
		{"StreamNamedApi", "persist", "persist.api.keys.api", OpKeys, "api", nil},
		{"DottedPrefix", "a.b", "a.b.api.destroy.acme", OpDestroy, "acme", nil},
		{"EveryOp", "persist", "persist.api.inventory.x", OpInventory, "x", nil},
		{"NoStream", "persist", "persist.api.get", OpGet, "", ErrInvalidName},
		{"EmptyStream", "persist", "persist.api.get.", OpGet, "", ErrInvalidName},
		{"EmptyToken", "persist", "persist.api.get.a..b", OpGet, "", ErrInvalidName},
		{"TrailingDot", "persist", "persist.api.get.a.", OpGet, "", ErrInvalidName},
		{"LowerHex", "persist", "persist.api.get.a%2e", OpGet, "", ErrInvalidName},
		{"Wildcard", "persist", "persist.api.get.*", OpGet, "", ErrInvalidName},
		{"FullWildcard", "persist", "persist.api.get.acme.>", OpGet, "", ErrInvalidName},
		{"TooManyTokens", "persist", "persist.api.get." + strings.Repeat("a.", MaxTokens) + "a", OpGet, "", ErrInvalidName},
		{"TooLong", "persist", "persist.api.get." + strings.Repeat("a", MaxNameLen+1), OpGet, "", ErrInvalidName},
		{"UnknownOp", "persist", "persist.api.fetch.acme", "", "", ErrUnknownSubject},
		{"UpperOp", "persist", "persist.api.GET.acme", "", "", ErrUnknownSubject},
		{"NoOp", "persist", "persist.api", "", "", ErrUnknownSubject},
		{"EmptyOp", "persist", "persist.api..acme", "", "", ErrUnknownSubject},
		{"OtherPrefix", "persist", "other.api.get.acme", "", "", ErrUnknownSubject},
		{"LongerPrefixToken", "persist", "persistx.api.get.acme", "", "", ErrUnknownSubject},
		{"PrefixSuffix", "sist", "persist.api.get.acme", "", "", ErrUnknownSubject},
		{"Event", "persist", "persist.ev.acme", "", "", ErrUnknownSubject},
		{"EmptyPrefix", "", ".api.get.acme", "", "", ErrUnknownSubject},
		{"Empty", "persist", "", "", "", ErrUnknownSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, stream, err := ParseAPI(tt.prefix, tt.subject)
			if op != tt.wantOp || stream != tt.wantStream {
				t.Fatalf("ParseAPI(%q, %.60q) = %q, %q, want %q, %q", tt.prefix, tt.subject, op, stream, tt.wantOp, tt.wantStream)
			}
			if tt.wantErr == nil && err != nil {
				t.Fatalf("ParseAPI(%q, %.60q) error = %v", tt.prefix, tt.subject, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseAPI(%q, %.60q) error = %v, want %v", tt.prefix, tt.subject, err, tt.wantErr)
			}
			if err == nil {
				if got := APISubject(tt.prefix, op, stream); got != tt.subject {
					t.Fatalf("APISubject(ParseAPI(%q)) = %q", tt.subject, got)
				}
			}
		})
	}
}

func TestParseEvent(t *testing.T) {
	tests := []struct {
		name       string
		prefix     string
		subject    string
		wantStream string
		wantErr    error
	}{
		{"One", "persist", "persist.ev.acme", "acme", nil},
		{"Nested", "persist", "persist.ev.acme.docs.%2E%2E", "acme.docs.%2E%2E", nil},
		{"StreamNamedEv", "persist", "persist.ev.ev", "ev", nil},
		{"DottedPrefix", "a.b", "a.b.ev.acme", "acme", nil},
		{"NoStream", "persist", "persist.ev", "", ErrInvalidName},
		{"EmptyStream", "persist", "persist.ev.", "", ErrInvalidName},
		{"Wildcard", "persist", "persist.ev.acme.>", "", ErrInvalidName},
		{"EscapesPlain", "persist", "persist.ev.%61", "", ErrInvalidName},
		{"API", "persist", "persist.api.get.acme", "", ErrUnknownSubject},
		{"OtherPrefix", "persist", "other.ev.acme", "", ErrUnknownSubject},
		{"LongerPrefixToken", "persist", "persistx.ev.acme", "", ErrUnknownSubject},
		{"EmptyPrefix", "", ".ev.acme", "", ErrUnknownSubject},
		{"EmptyPrefixBare", "", ".ev", "", ErrUnknownSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := ParseEvent(tt.prefix, tt.subject)
			if stream != tt.wantStream {
				t.Fatalf("ParseEvent(%q, %q) = %q, want %q", tt.prefix, tt.subject, stream, tt.wantStream)
			}
			if tt.wantErr == nil && err != nil {
				t.Fatalf("ParseEvent(%q, %q) error = %v", tt.prefix, tt.subject, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseEvent(%q, %q) error = %v, want %v", tt.prefix, tt.subject, err, tt.wantErr)
			}
		})
	}
}
