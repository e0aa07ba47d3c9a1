package main

import (
	"log/slog"
	"syscall"
)

// raiseNoFile raises the soft limit on open files to the hard limit: every
// open stream holds descriptors, and the broker sizes its open-stream
// budget from the soft limit it finds. Both limits are logged; a failure
// only leaves the limit as it was.
func raiseNoFile(logger *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logger.Warn("read the open files limit", "err", err)
		return
	}
	before := lim.Cur
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			logger.Warn("raise the open files limit", "soft", before, "hard", lim.Max, "err", err)
			return
		}
	}
	logger.Info("open files limit", "soft", lim.Cur, "hard", lim.Max, "soft_before", before)
}
