package command

import (
	"runtime/debug"
	"strings"
)

// VCSMark precedes the revision in what [Version] returns.
const VCSMark = "commit "

// Version describes a Go binary from its build information: its module
// version, the VCS revision it was built from (+dirty for uncommitted
// changes) and that revision's time, and the Go version, as far as bi has
// them; "unknown" for nil.
func Version(bi *debug.BuildInfo) string {
	if bi == nil {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, modified, when string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		case "vcs.time":
			when = " (" + s.Value + ")"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + VCSMark + rev + modified + when
	}
	return strings.TrimSpace(v + " " + bi.GoVersion)
}
