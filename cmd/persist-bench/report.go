package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// side is one column of a row: Persist's measurements or its peer's (the
// JetStream equivalent or the echo ceiling), one sample per repetition.
type side struct {
	Label      string    `json:"label"`
	Samples    []float64 `json:"samples"`
	Median     float64   `json:"median"`
	Min        float64   `json:"min"`
	Max        float64   `json:"max"`
	P50ms      float64   `json:"p50_ms,omitempty"`
	P99ms      float64   `json:"p99_ms,omitempty"`
	Errors     uint64    `json:"errors"`
	FirstError string    `json:"first_error,omitempty"`
	RSSMaxMB   float64   `json:"rss_max_mb,omitempty"`
	RSSEndMB   float64   `json:"rss_end_mb,omitempty"`

	hist histogram // every repetition's latencies
}

// add records one repetition: its value in the row's unit and its counts.
func (s *side) add(v float64, res result) {
	s.Samples = append(s.Samples, v)
	s.Errors += res.errors
	if res.firstErr != nil && s.FirstError == "" {
		s.FirstError = res.firstErr.Error()
	}
	s.hist.merge(&res.hist)
}

// finish computes the median, the range and the latency quantiles.
func (s *side) finish() {
	if len(s.Samples) == 0 {
		return
	}
	v := slices.Clone(s.Samples)
	slices.Sort(v)
	s.Min, s.Max = v[0], v[len(v)-1]
	if m := len(v) / 2; len(v)%2 == 1 {
		s.Median = v[m]
	} else {
		s.Median = (v[m-1] + v[m]) / 2
	}
	if s.hist.n > 0 {
		s.P50ms = ms(s.hist.quantile(0.50))
		s.P99ms = ms(s.hist.quantile(0.99))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// row is one line of the table: a scenario, Persist against its peer.
type row struct {
	Name          string   `json:"name"`
	Title         string   `json:"title"`
	Unit          string   `json:"unit"`
	LowerIsBetter bool     `json:"lower_is_better"`
	Persist       *side    `json:"persist,omitempty"`
	Peer          *side    `json:"peer,omitempty"`
	Ratio         *float64 `json:"ratio,omitempty"` // Persist's median over the peer's
	Target        string   `json:"target,omitempty"`
	Met           string   `json:"met,omitempty"`
	CPU           *cpuUse  `json:"cpu,omitempty"` // the cluster rows: where the CPU went
}

// addRow returns the row called name, made on first use.
func (r *runner) addRow(name, title, unit string, lowerIsBetter bool) *row {
	if rw, ok := r.rows[name]; ok {
		return rw
	}
	rw := &row{Name: name, Title: title, Unit: unit, LowerIsBetter: lowerIsBetter}
	r.rows[name] = rw
	return rw
}

// getRow is addRow for a row with both sides, which several repetitions
// add to.
func (r *runner) getRow(name, title, unit string, lowerIsBetter bool) *row {
	rw := r.addRow(name, title, unit, lowerIsBetter)
	if rw.Persist == nil {
		rw.Persist, rw.Peer = &side{}, &side{}
	}
	return rw
}

// rowOrder is the order of the table, derived rows after their sources.
var rowOrder = []string{
	scEcho, scSet, "set/echo", scSetSync, "set-sync/set", scSetMany, scGet, scGetAll,
	scCreate, scRSS, scRestart, scSetRandom, "set-random/set", "set-random-p99",
	"huge-ready", "huge-rss-idle", "huge-set", "huge-get", "huge-rss-max", "huge-list",
}

// target is a goal of issue 6 for a row: on the ratio, or on Persist's
// own value (onValue); must is required, aim is hoped for, 0 is none.
type target struct {
	must, aim  float64
	below      bool // the value must be at most must (less than, onValue)
	onValue    bool
	zeroErrors bool // and Persist had no error
}

var targets = map[string]target{
	scSet:            {must: 0.8, aim: 1.0},
	"set/echo":       {must: 0.6},
	scSetSync:        {must: 10},
	"set-sync/set":   {must: 0.7},
	scSetMany:        {must: 1.0},
	scGet:            {must: 0.8, aim: 1.0},
	scGetAll:         {must: 0.8, aim: 1.0},
	scCreate:         {must: 10, zeroErrors: true},
	scRSS:            {must: 0.25, below: true},
	scSetRandom:      {aim: 1.0},
	"set-random/set": {must: 0.25},
	"set-random-p99": {must: 50, below: true, onValue: true},
	"huge-ready":     {must: 1, below: true, onValue: true},
	"huge-list":      {must: 50, below: true, onValue: true},
}

// text shows the target as the table does.
func (t target) text(unit string) string {
	op := "≥ "
	if t.below {
		op = "≤ "
		if t.onValue {
			op = "< "
		}
	}
	u := ""
	if t.onValue {
		u = " " + unit
	}
	var s string
	switch {
	case t.must > 0 && t.aim > 0:
		s = fmt.Sprintf("%s%g (aim %g)", op, t.must, t.aim)
	case t.must > 0:
		s = fmt.Sprintf("%s%g%s", op, t.must, u)
	default:
		s = fmt.Sprintf("aim %s%g", op, t.aim)
	}
	if t.zeroErrors {
		s += ", 0 errors"
	}
	return s
}

// check says whether v (and the error count) meets the target.
func (t target) check(v float64, errs uint64) string {
	ok := func(goal float64) bool {
		switch {
		case !t.below:
			return v >= goal
		case t.onValue:
			return v < goal
		default:
			return v <= goal
		}
	}
	yn := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	switch {
	case t.must > 0 && t.aim > 0:
		return fmt.Sprintf("%s (aim: %s)", yn(ok(t.must) && (!t.zeroErrors || errs == 0)), yn(ok(t.aim)))
	case t.must > 0:
		return yn(ok(t.must) && (!t.zeroErrors || errs == 0))
	default:
		return "aim: " + yn(ok(t.aim))
	}
}

// finishRows derives the rows that compare two others, computes medians,
// ratios and targets, and returns the rows in table order.
func (r *runner) finishRows() []*row {
	for _, rw := range r.rows {
		for _, s := range []*side{rw.Persist, rw.Peer} {
			if s != nil {
				s.finish()
			}
		}
	}
	derive := func(name, title, unit string, a, b *side) {
		if a != nil && b != nil && len(a.Samples) > 0 && len(b.Samples) > 0 {
			r.rows[name] = &row{Name: name, Title: title, Unit: unit, Persist: a, Peer: b}
		}
	}
	pick := func(name string, persist bool) *side {
		rw := r.rows[name]
		switch {
		case rw == nil:
			return nil
		case persist:
			return rw.Persist
		default:
			return rw.Peer
		}
	}
	derive("set/echo", "`set`, one stream ÷ echo ceiling", "req/s", pick(scSet, true), pick(scEcho, false))
	derive("set-sync/set", "`set`, `sync:true` ÷ JetStream default sync publish", "req/s", pick(scSetSync, true), pick(scSet, false))
	for _, sc := range []string{scClusterSet, scClusterSetMany} {
		ws := r.cfg.workers
		for _, n := range ws[min(1, len(ws)):] {
			name := clusterRow(sc, n)
			if rw := r.rows[name]; rw != nil {
				derive(name+"/"+strconv.Itoa(ws[0]), fmt.Sprintf("%s ÷ %d %s", rw.Title, ws[0], plural(ws[0], "worker")), rw.Unit, rw.Persist, pick(clusterRow(sc, ws[0]), true))
			}
		}
	}
	derive("set-random/set", "random-stream `set` after restart ÷ one-stream `set`", "req/s", pick(scSetRandom, true), pick(scSet, true))
	if a, b := pick(scSetRandom, true), pick(scSetRandom, false); a != nil && b != nil && a.hist.n > 0 && b.hist.n > 0 {
		p := func(s *side) *side {
			q := &side{Label: s.Label + ", p99", Samples: []float64{s.P99ms}, Errors: s.Errors}
			q.finish()
			return q
		}
		r.rows["set-random-p99"] = &row{Name: "set-random-p99", Title: "`set` on a random stream after a restart, p99", Unit: "ms", LowerIsBetter: true, Persist: p(a), Peer: p(b)}
	}
	var out []*row
	for _, name := range append(slices.Clone(rowOrder), clusterRowNames(r.cfg.workers)...) {
		rw, ok := r.rows[name]
		if !ok || !r.selected(name) {
			continue
		}
		if rw.Persist != nil && rw.Peer != nil && len(rw.Persist.Samples) > 0 && len(rw.Peer.Samples) > 0 && rw.Peer.Median != 0 {
			ratio := rw.Persist.Median / rw.Peer.Median
			rw.Ratio = &ratio
		}
		if t, ok := targets[name]; ok {
			rw.Target = t.text(rw.Unit)
			switch {
			case t.onValue && rw.Persist != nil && len(rw.Persist.Samples) > 0:
				rw.Met = t.check(rw.Persist.Median, rw.Persist.Errors)
			case !t.onValue && rw.Ratio != nil:
				rw.Met = t.check(*rw.Ratio, rw.Persist.Errors)
			}
		}
		out = append(out, rw)
	}
	return out
}

// selected reports whether a row's scenario was asked for; derived rows
// follow the row they are listed under.
func (r *runner) selected(name string) bool {
	base, _, _ := strings.Cut(name, "/")
	switch {
	case strings.HasPrefix(name, scClusterSetMany+"-"):
		base = scClusterSetMany
	case strings.HasPrefix(name, scClusterSet+"-"):
		base = scClusterSet
	case strings.HasPrefix(name, "huge"):
		base = scHuge
	case name == "set-random-p99":
		base = scSetRandom
	}
	return r.cfg.scenarios[base]
}

// report is what --json prints.
type report struct {
	Machine  machine  `json:"machine"`
	Settings settings `json:"settings"`
	Rows     []*row   `json:"rows"`
	Notes    []string `json:"notes,omitempty"`
}

// settings are the parameters of a run.
type settings struct {
	Clients     int      `json:"clients"`
	Connections int      `json:"connections"`
	Payload     int      `json:"payload_bytes"`
	DurationS   float64  `json:"duration_s"`
	Reps        int      `json:"reps"`
	ManyReps    int      `json:"many_reps"`
	ManyStreams int      `json:"many_streams"`
	HugeStreams int      `json:"huge_streams"`
	GetMsgs     int      `json:"get_msgs"`
	GetAllMsgs  int      `json:"getall_msgs"`
	IdleS       float64  `json:"idle_s"`
	Scenarios   []string `json:"scenarios"`
	WorkerArgs  []string `json:"worker_args"`

	ClusterWorkers []int `json:"cluster_workers,omitempty"`
	ClusterStreams int   `json:"cluster_streams,omitempty"`
}

func (r *runner) settings() settings {
	var sc []string
	for _, s := range knownScenarios {
		if r.cfg.scenarios[s] {
			sc = append(sc, s)
		}
	}
	s := settings{
		Clients: r.cfg.Clients, Connections: (r.cfg.Clients + clientsPerConn - 1) / clientsPerConn,
		Payload: r.cfg.Payload, DurationS: r.cfg.Duration.Seconds(), Reps: r.cfg.Reps, ManyReps: r.cfg.ManyReps,
		ManyStreams: r.cfg.ManyStreams, HugeStreams: r.cfg.HugeStreams, GetMsgs: r.cfg.GetMsgs, GetAllMsgs: r.cfg.GetAllMsgs,
		IdleS: r.cfg.Idle.Seconds(), Scenarios: sc, WorkerArgs: append([]string{}, r.cfg.WorkerArgs...),
	}
	if r.cfg.scenarios[scClusterSet] || r.cfg.scenarios[scClusterSetMany] {
		s.ClusterWorkers, s.ClusterStreams = r.cfg.workers, r.cfg.ClusterStreams
	}
	return s
}

// print writes the JSON or the markdown table on stdout.
func (r *runner) print() error {
	rows := r.finishRows()
	if r.cfg.JSON {
		enc := json.NewEncoder(r.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report{Machine: r.machine, Settings: r.settings(), Rows: rows, Notes: r.notes})
	}
	printMarkdown(r.stdout, r.machine, r.settings(), rows, r.notes)
	return nil
}

func printMarkdown(w io.Writer, m machine, s settings, rows []*row, notes []string) {
	fmt.Fprintf(w, "## persist-bench, %s\n\n", m.Date)
	fmt.Fprintf(w, "- command: `%s`\n", m.Command)
	fmt.Fprintf(w, "- machine: %s, %d cores, %d MB memory, Linux %s, %s\n", m.CPU, m.Cores, m.MemoryMB, m.Kernel, m.OS)
	fmt.Fprintf(w, "- bench: %s; worker: %s (%s)\n", m.GoVersion, m.WorkerInfo, m.Worker)
	fmt.Fprintf(w, "- data: %s, %s\n", m.DataDir, m.DataFS)
	fmt.Fprintf(w, "- load average (1, 5, 15 min): %s at the start, %s at the end\n", m.LoadStart, m.LoadEnd)
	fmt.Fprintf(w, "- %d clients on %d connections, %d-byte payloads, %v per measurement, %d repetitions (Persist and its peer alternating), many-streams rows %d × %s streams, huge row %s streams; worker flags: %s\n",
		s.Clients, s.Connections, s.Payload, time.Duration(s.DurationS*float64(time.Second)), s.Reps, s.ManyReps, count(s.ManyStreams), count(s.HugeStreams), orNone(strings.Join(s.WorkerArgs, " ")))
	if len(s.ClusterWorkers) > 0 {
		var ws []string
		for _, n := range s.ClusterWorkers {
			ws = append(ws, strconv.Itoa(n))
		}
		fmt.Fprintf(w, "- cluster rows: %d nats-server nodes (routes, JetStream, the mappings of %d partitions), %s workers (`--partitions auto`, each on the next node, its own data directory), clients on every node, %s streams of a namespace each\n",
			clusterNodes, clusterPartitions, strings.Join(ws, ", "), count(s.ClusterStreams))
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| scenario | Persist | JetStream / ceiling | ratio | target | met | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, rw := range rows {
		ratio := ""
		if rw.Ratio != nil {
			ratio = fmtRatio(*rw.Ratio)
			if rw.LowerIsBetter {
				ratio += " (lower is better)"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", rw.Title, cell(rw.Persist, rw.Unit), cell(rw.Peer, rw.Unit), ratio, rw.Target, rw.Met, errCell(rw))
	}

	fmt.Fprintln(w, "\nEach side, all repetitions together:")
	fmt.Fprintln(w, "\n| scenario | side | samples | p50 | p99 | errors | RSS max / end |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, rw := range rows {
		if strings.Contains(rw.Name, "/") || strings.HasSuffix(rw.Name, "-p99") {
			continue // the same sides as their source rows
		}
		for _, sd := range []*side{rw.Persist, rw.Peer} {
			if sd == nil || len(sd.Samples) == 0 {
				continue
			}
			var samples []string
			for _, v := range sd.Samples {
				samples = append(samples, fmtValue(v, rw.Unit))
			}
			lat := func(v float64) string {
				if v == 0 {
					return ""
				}
				return fmtLatency(time.Duration(v * float64(time.Millisecond)))
			}
			rss := ""
			if sd.RSSMaxMB > 0 || sd.RSSEndMB > 0 {
				rss = fmt.Sprintf("%.0f / %.0f MB", sd.RSSMaxMB, sd.RSSEndMB)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d | %s |\n", rw.Title, sd.Label, strings.Join(samples, ", "), lat(sd.P50ms), lat(sd.P99ms), sd.Errors, rss)
		}
	}
	var errLines []string
	for _, rw := range rows {
		for _, sd := range []*side{rw.Persist, rw.Peer} {
			if sd != nil && sd.FirstError != "" && !strings.Contains(rw.Name, "/") {
				errLines = append(errLines, fmt.Sprintf("- %s, %s: %d errors, the first: %s", rw.Title, sd.Label, sd.Errors, sd.FirstError))
			}
		}
	}
	if len(errLines) > 0 || len(notes) > 0 {
		fmt.Fprintln(w)
	}
	for _, l := range errLines {
		fmt.Fprintln(w, l)
	}
	for _, n := range notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// cell is a side's median with its unit and, over several repetitions,
// its range.
func cell(s *side, unit string) string {
	if s == nil || len(s.Samples) == 0 {
		return ""
	}
	c := fmtValue(s.Median, unit) + " " + unit
	if len(s.Samples) > 1 {
		c += fmt.Sprintf(" (%s–%s)", fmtValue(s.Min, unit), fmtValue(s.Max, unit))
	}
	if unit == "req/s" && s.P99ms > 0 && s.hist.n > 0 {
		c += ", p99 " + fmtLatency(time.Duration(s.P99ms*float64(time.Millisecond)))
	}
	return c
}

func errCell(rw *row) string {
	var parts []string
	for _, s := range []*side{rw.Persist, rw.Peer} {
		if s != nil && len(s.Samples) > 0 {
			e := strconv.FormatUint(s.Errors, 10)
			if s.Errors > 0 {
				e = "**" + e + "**"
			}
			parts = append(parts, e)
		}
	}
	return strings.Join(parts, " / ")
}

// fmtValue writes a value of a unit with about three significant digits.
func fmtValue(v float64, unit string) string {
	switch unit {
	case "MB":
		return strconv.FormatFloat(v, 'f', 0, 64)
	case "s":
		if v < 10 {
			return strconv.FormatFloat(v, 'f', 3, 64)
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	case "ms":
		if v < 10 {
			return strconv.FormatFloat(v, 'f', 2, 64)
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	switch a := math.Abs(v); {
	case a >= 100_000:
		return strconv.FormatFloat(v/1000, 'f', 0, 64) + "k"
	case a >= 1000:
		return strconv.FormatFloat(v/1000, 'f', 1, 64) + "k"
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

func fmtRatio(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a < 0.01:
		return strconv.FormatFloat(v, 'g', 2, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
