package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/nats-persist/persist/cmd/internal/command"
)

func TestRun_Version(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"--data", "/nowhere", "--version"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("run(%q) error = %v", args, err)
		}
		out := stdout.String()
		if want := "persist-worker " + version() + " "; !strings.HasPrefix(out, want) {
			t.Errorf("run(%q) wrote %q, want it to start with %q", args, out, want)
		}
		if !strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
			t.Errorf("run(%q) wrote %q, want one line with the Go version %s", args, out, runtime.Version())
		}
		if stderr.Len() != 0 {
			t.Errorf("run(%q) stderr = %q, want empty", args, stderr.String())
		}
	}
	// Like --help, it is no flag: no variable turns it on.
	t.Setenv("PERSIST_VERSION", "true")
	if _, err := parseConfig(nil, func(k string) (string, bool) { return "true", k == "PERSIST_VERSION" }); err != nil {
		t.Fatalf("parseConfig(PERSIST_VERSION=true) error = %v, want nil", err)
	}
}

func TestRun_BadValueMessages(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--idle-timeout", "5"}, `invalid value "5" for flag --idle-timeout: not a duration: a number with a unit, such as 90s, 1m, 1h30m or 500ms`},
		{[]string{"--max-open", "lots"}, `invalid value "lots" for flag --max-open: not a whole number, such as 0 or 100`},
		{[]string{"--summary-interval", "-1s"}, `invalid --summary-interval -1s: must not be negative`},
	}
	for _, tt := range tests {
		err := run(context.Background(), tt.args, &bytes.Buffer{}, &bytes.Buffer{})
		if command.ExitCode(err) != 2 || err.Error() != tt.want {
			t.Errorf("run(%q) = %v, want usage error %q", tt.args, err, tt.want)
		}
	}
}
