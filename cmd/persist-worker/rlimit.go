package main

import (
	"log/slog"
	"syscall"
)

// logNoFile logs the limits on open files: every open stream holds
// descriptors, and the broker sizes its open-stream budget from the soft
// limit. The Go runtime has already raised the soft limit to (one below)
// the hard limit when the process started (package syscall's init, since
// Go 1.19), so there is nothing left to raise here.
func logNoFile(logger *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logger.Warn("read the open files limit", "err", err)
		return
	}
	logger.Info("open files limit", "soft", lim.Cur, "hard", lim.Max)
}
