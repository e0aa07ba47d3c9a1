package main

import (
	"strings"
	"testing"

	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

// TestParseConfig_ChangesWindow checks --changes-window: its default, the
// flag and its environment variable, and the values it refuses.
func TestParseConfig_ChangesWindow(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  env
		want int
	}{
		{nil, env{}, subjects.DefaultChangesWindow},
		{[]string{"--changes-window", "50"}, env{}, 50},
		{nil, env{"PERSIST_CHANGES_WINDOW": "1"}, 1},
		{[]string{"--changes-window=2"}, env{"PERSIST_CHANGES_WINDOW": "9"}, 2},
	} {
		cfg, err := parseConfig(c.args, c.env.lookup)
		if err != nil {
			t.Fatalf("parseConfig(%q, %v) = %v", c.args, c.env, err)
		}
		if cfg.ChangesWindow != c.want {
			t.Fatalf("parseConfig(%q, %v): ChangesWindow = %d, want %d", c.args, c.env, cfg.ChangesWindow, c.want)
		}
	}
	for _, bad := range []string{"0", "-1", "many", "1.5"} {
		_, err := parseConfig([]string{"--changes-window", bad}, env{}.lookup)
		if command.ExitCode(err) != 2 || !strings.Contains(err.Error(), "changes-window") {
			t.Fatalf("parseConfig(--changes-window %s) = %v, want a usage error naming the flag", bad, err)
		}
	}
}
