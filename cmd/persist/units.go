package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseCount reads a whole number; -1 and "unlimited" mean no limit.
func parseCount(s string) (int64, error) {
	if s == "unlimited" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("want a whole number, or -1 for unlimited")
	}
	return n, nil
}

// sizeUnits are the suffixes parseSize takes, longest first.
var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
}

// parseSize reads a byte count: a whole number with an optional unit
// (512KiB, 10MB, 1G); -1 and "unlimited" mean no limit.
func parseSize(s string) (int64, error) {
	if s == "unlimited" || s == "-1" {
		return -1, nil
	}
	bad := errors.New("want a size such as 1048576, 512KiB, 10MB or 1GiB, or -1 for unlimited")
	num, factor := s, int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			num, factor = strings.TrimSpace(rest), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/factor {
		return 0, bad
	}
	return n * factor, nil
}

// parseMillis reads a duration (90s, 24h, 1h30m; 0 or "unlimited" for
// none) as milliseconds.
func parseMillis(s string) (int64, error) {
	if s == "unlimited" || s == "0" {
		return 0, nil
	}
	d, err := parseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration such as 90s, 10m, 24h or 30d, or 0")
	}
	return d.Milliseconds(), nil
}

// parseDuration reads a Go duration, or a whole number of days (30d).
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > 100*365 {
			return 0, errors.New("bad number of days")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// formatSize writes a byte count readably: 1.5 KiB, 3 B.
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/float64(div)), "0"), ".") + " " + string("KMGTPE"[exp]) + "iB"
}

// formatMillis writes milliseconds as a duration: 2m0s, 1h0m0s.
func formatMillis(ms int64) string {
	return (time.Duration(ms) * time.Millisecond).String()
}

// parseSince reads --since: a duration back from now (1h, 30m) or an
// RFC 3339 time; it returns Unix ms.
func parseSince(s string, now time.Time) (int64, error) {
	if d, err := parseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UnixMilli(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixMilli(), nil
	}
	return 0, errors.New("want a duration back from now (30m, 1h, 7d) or a time such as 2026-01-02T15:04:05Z")
}
