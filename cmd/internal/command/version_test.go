package command

import (
	"runtime/debug"
	"testing"
)

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"Nil", nil, "unknown"},
		{"NoVCS", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "(devel) go1.26.8"},
		{"VCS", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"},
			{Key: "vcs.modified", Value: "true"},
			{Key: "vcs.time", Value: "2026-12-01T00:00:00Z"},
		}}, "v1.2.3 commit 0123456789ab+dirty (2026-12-01T00:00:00Z) go1.26.8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Version(tc.bi); got != tc.want {
				t.Fatalf("Version() = %q, want %q", got, tc.want)
			}
		})
	}
}
