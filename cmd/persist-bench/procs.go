package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout is how long a child gets to exit after SIGTERM before it is
// killed. A worker closing 100k streams or a JetStream server flushing 10k
// needs well over the seconds a small one does.
const stopTimeout = 3 * time.Minute

// child is a process the bench started: a nats-server (this binary in its
// serve-nats mode) or a persist worker. Its output goes to a log file under
// the data directory.
type child struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed once the process has exited and been waited for
	err  error         // Wait's result, set before done is closed
}

// startChild starts path with args. If readyLine is set, it waits (up to
// timeout) for the child to print a line starting with it on stdout and
// returns the rest of that line; else stdout goes to the log as well.
// On Linux the child is killed when the bench dies and runs in its own
// process group, so a Ctrl-C reaches only the bench, which then stops its
// children in order (see setDeathSignal).
func startChild(name, logPath, path string, args []string, readyLine string, timeout time.Duration) (*child, string, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stderr = lf
	setDeathSignal(cmd)
	var stdout *bufio.Reader
	if readyLine != "" {
		p, err := cmd.StdoutPipe()
		if err != nil {
			lf.Close()
			return nil, "", fmt.Errorf("start %s: %w", name, err)
		}
		stdout = bufio.NewReader(p)
	} else {
		cmd.Stdout = lf
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: lf, done: make(chan struct{})}
	lines := make(chan string, 1)
	if stdout != nil {
		go func() {
			// The pipe must be read to its end before Wait, so this
			// goroutine keeps reading after the ready line.
			var first string
			for {
				line, err := stdout.ReadString('\n')
				if first == "" && strings.HasPrefix(line, readyLine) {
					first = line
					lines <- strings.TrimSpace(strings.TrimPrefix(line, readyLine))
				} else if line != "" {
					lf.WriteString(line)
				}
				if err != nil {
					close(lines)
					break
				}
			}
			c.wait()
		}()
	} else {
		go c.wait()
	}
	if stdout == nil {
		return c, "", nil
	}
	select {
	case rest, ok := <-lines:
		if ok {
			return c, rest, nil
		}
	case <-time.After(timeout):
	}
	c.kill()
	return nil, "", fmt.Errorf("%s did not start; its log: %s%s", name, logPath, tail(logPath))
}

func (c *child) wait() {
	c.err = c.cmd.Wait()
	c.log.Close()
	close(c.done)
}

// pid is the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the exit, killing the child after
// timeout. It returns how long the child took to exit and whether it had
// to be killed.
func (c *child) stop(timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	if c.exited() {
		return 0, nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return time.Since(t0), nil
	case <-time.After(timeout):
		c.kill()
		return time.Since(t0), fmt.Errorf("%s did not exit within %v of SIGTERM; killed", c.name, timeout)
	}
}

// kill ends the child at once and waits for it.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// tail is the end of a log file, to explain a child that failed.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\n" + string(bytes.TrimRight(b, "\n"))
}

// children is every child of a run, so that every exit path can end them.
type children struct {
	mu   sync.Mutex
	list []*child
}

func (cs *children) add(c *child) {
	cs.mu.Lock()
	cs.list = append(cs.list, c)
	cs.mu.Unlock()
}

// stopAll stops every child still running, all at once, and forgets them.
func (cs *children) stopAll(timeout time.Duration) error {
	cs.mu.Lock()
	list := cs.list
	cs.list = nil
	cs.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(list))
	for i, c := range list {
		wg.Go(func() { _, errs[i] = c.stop(timeout) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readRSS is the resident set size of process pid in bytes (VmRSS of
// /proc/<pid>/status), 0 where it cannot be read.
func readRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// rssSampler reads a process's RSS every rssEvery while a phase runs.
type rssSampler struct {
	stopc chan struct{}
	done  chan struct{}
	max   int64
	last  int64
}

const rssEvery = 100 * time.Millisecond

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		for {
			if v := readRSS(pid); v > 0 {
				s.last = v
				s.max = max(s.max, v)
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the largest and the last value.
func (s *rssSampler) stop() (maxRSS, last int64) {
	close(s.stopc)
	<-s.done
	return s.max, s.last
}

// cpuTicks is CPU time in clock ticks at one moment: the machine's, busy
// and in all (every CPU), and that of each group of processes.
type cpuTicks struct {
	at          time.Time
	busy, total uint64
	groups      map[string]uint64
}

// readCPU reads /proc/stat and /proc/<pid>/stat of every process of each
// group; what cannot be read counts 0 (other systems).
func readCPU(groups map[string][]int) cpuTicks {
	t := cpuTicks{at: time.Now(), groups: map[string]uint64{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		// cpu user nice system idle iowait irq softirq steal (guest
		// time is already in user and nice).
		if f := strings.Fields(line); len(f) >= 9 && f[0] == "cpu" {
			for i, v := range f[1:9] {
				n, _ := strconv.ParseUint(v, 10, 64)
				t.total += n
				if i != 3 && i != 4 {
					t.busy += n
				}
			}
		}
	}
	for g, pids := range groups {
		for _, pid := range pids {
			t.groups[g] += procTicks(pid)
		}
	}
	return t
}

// procTicks is the user and system time of process pid, all its threads.
func procTicks(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid … utime stime: fields 14 and 15, the comm
	// may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

// cpuUse is where the CPU went during measurements: cores busy on
// average over Seconds, on the whole machine and per group of processes,
// while Items requests (or messages) were done.
type cpuUse struct {
	Seconds float64 `json:"seconds"`
	Items   uint64  `json:"items"`
	Busy    float64 `json:"busy_cores"`
	NATS    float64 `json:"nats_cores"`
	Workers float64 `json:"workers_cores"`
	Bench   float64 `json:"bench_cores"`
}

// since is the use between b and t, nil when the machine's time could not
// be read.
func (t cpuTicks) since(b cpuTicks) *cpuUse {
	total := float64(t.total - b.total)
	if t.total <= b.total {
		return nil
	}
	cores := float64(runtime.NumCPU())
	share := func(g string) float64 { return float64(t.groups[g]-min(b.groups[g], t.groups[g])) / total * cores }
	return &cpuUse{
		Seconds: t.at.Sub(b.at).Seconds(),
		Busy:    float64(t.busy-b.busy) / total * cores,
		NATS:    share("nats"),
		Workers: share("workers"),
		Bench:   share("bench"),
	}
}

// add is u and o together, each weighted by its time; either may be nil.
func (u *cpuUse) add(o *cpuUse) *cpuUse {
	switch {
	case u == nil:
		return o
	case o == nil:
		return u
	}
	s := u.Seconds + o.Seconds
	w := func(a, b float64) float64 { return (a*u.Seconds + b*o.Seconds) / max(s, 1e-9) }
	return &cpuUse{Seconds: s, Items: u.Items + o.Items, Busy: w(u.Busy, o.Busy), NATS: w(u.NATS, o.NATS), Workers: w(u.Workers, o.Workers), Bench: w(u.Bench, o.Bench)}
}

// rest is the busy time of neither group: other processes, the kernel.
func (u *cpuUse) rest() float64 { return max(0, u.Busy-u.NATS-u.Workers-u.Bench) }

// perItem is the CPU time that cores busy over u.Seconds spent per item.
func (u *cpuUse) perItem(cores float64) time.Duration {
	if u.Items == 0 {
		return 0
	}
	return time.Duration(cores * u.Seconds / float64(u.Items) * float64(time.Second))
}
