package integration

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-persist/persist/client"
)

// The worker's documented memory bound (README, "Many streams"): the open
// streams stay within --memory-budget, and the idle process itself takes
// about 26 MB; request bodies waiting in the worker are bounded apart, by
// exhaustQueueBytes ("Bounds": 256 MiB in the whole worker). The Go
// runtime and the NATS client's buffers come on top of both; they get
// exhaustSlack.
const (
	exhaustBaseRSS    = 26 << 20
	exhaustQueueBytes = 256 << 20
	exhaustSlack      = 32 << 20

	exhaustDefaultBudget = 256 << 20 // the default --memory-budget
)

// exhaustWorker starts a NATS server and the worker as a child process
// with args, on a fresh data directory.
func exhaustWorker(tb testing.TB, args ...string) (s *server.Server, w *worker, data string) {
	tb.Helper()
	s = runServer(tb, -1)
	data = tb.TempDir()
	w = startWorker(tb, s.ClientURL(), append([]string{"--data", data}, args...)...)
	return s, w, data
}

// exhaustRSS is the resident set size of process pid, in bytes.
func exhaustRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// exhaustStats asks the worker for its micro stats and returns the custom
// data of endpoint op (the broker's counters) and the error replies of
// every endpoint.
func exhaustStats(nc *nats.Conn, op string) (data map[string]any, errs int, err error) {
	m, err := nc.Request("$SRV.STATS.persist", nil, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	var st struct {
		Endpoints []struct {
			Name      string          `json:"name"`
			NumErrors int             `json:"num_errors"`
			Data      json.RawMessage `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return nil, 0, err
	}
	for _, ep := range st.Endpoints {
		errs += ep.NumErrors
		if ep.Name == op {
			if err := json.Unmarshal(ep.Data, &data); err != nil {
				return nil, 0, err
			}
		}
	}
	if data == nil {
		return nil, 0, fmt.Errorf("no endpoint %q in %s", op, m.Data)
	}
	return data, errs, nil
}

// exhaustNum reads a number of the stats data (0 when absent).
func exhaustNum(data map[string]any, key string) float64 {
	f, _ := data[key].(float64)
	return f
}

// exhaustShedFigures picks the stats fields about shedding, waiting and
// slow consumers, whatever this worker version names them.
func exhaustShedFigures(data map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range data {
		for _, w := range []string{"shed", "wait", "slow", "overload", "goroutine", "dropped"} {
			if strings.Contains(k, w) {
				out["stats_"+k] = v
			}
		}
	}
	return out
}

// exhaustSlowConsumers is the worker's own count of slow-consumer events
// on its subscriptions, and whether its stats report one at all.
func exhaustSlowConsumers(data map[string]any) (n float64, ok bool) {
	for k, v := range data {
		if strings.Contains(k, "slow") {
			f, _ := v.(float64)
			n, ok = n+f, true
		}
	}
	return n, ok
}

// exhaustSampler samples the worker's RSS and its open-stream counts
// until stopped.
type exhaustSampler struct {
	stop, done chan struct{}

	maxRSS       int64
	maxOpenFiles float64
	maxOpen      float64 // the worker's budget, as it reports it
	samples      int
	statsMissed  int // stats requests that timed out under load
}

func exhaustSample(tb testing.TB, nc *nats.Conn, w *worker) *exhaustSampler {
	tb.Helper()
	s := &exhaustSampler{stop: make(chan struct{}), done: make(chan struct{})}
	pid := w.cmd.Process.Pid
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := exhaustRSS(pid); err == nil {
				s.maxRSS = max(s.maxRSS, rss)
			}
			if d, _, err := exhaustStats(nc, "set"); err == nil {
				s.maxOpenFiles = max(s.maxOpenFiles, exhaustNum(d, "open_files"))
				s.maxOpen = exhaustNum(d, "max_open")
			} else {
				s.statsMissed++
			}
			s.samples++
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	tb.Cleanup(s.finish)
	return s
}

// finish stops the sampler; its figures are final afterwards.
func (s *exhaustSampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// check fails unless the samples stayed within the open-stream budget
// and RSS under bound.
func (s *exhaustSampler) check(tb testing.TB, bound int64) {
	tb.Helper()
	s.finish()
	if s.samples-s.statsMissed == 0 {
		tb.Fatalf("no stats sample answered (%d tried)", s.samples)
	}
	if s.maxOpenFiles > s.maxOpen {
		tb.Errorf("open_files reached %v, above max_open %v", s.maxOpenFiles, s.maxOpen)
	}
	if s.maxRSS > bound {
		tb.Errorf("worker RSS reached %d MiB, above its bound of %d MiB", s.maxRSS>>20, bound>>20)
	}
}

func (s *exhaustSampler) figures() map[string]any {
	return map[string]any{"rss_max_mib": s.maxRSS >> 20, "open_files_max": s.maxOpenFiles,
		"max_open": s.maxOpen, "stats_samples": s.samples, "stats_missed": s.statsMissed}
}

// exhaustReason is the reason of a reply: "ok", the error reason, or
// "no_responders".
func exhaustReason(m *nats.Msg) string {
	if m.Header.Get("Status") == "503" && len(m.Data) == 0 {
		return "no_responders"
	}
	if m.Header.Get("Nats-Service-Error-Code") == "" {
		return "ok"
	}
	var e struct {
		Error struct{ Reason string } `json:"error"`
	}
	if json.Unmarshal(m.Data, &e) != nil || e.Error.Reason == "" {
		return "unparsable"
	}
	return e.Error.Reason
}

// exhaustTally counts outcomes by name.
type exhaustTally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *exhaustTally) add(name string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[name] += n
}

func (t *exhaustTally) get(name string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n[name]
}

// into adds the counts to figures as prefix_<name>.
func (t *exhaustTally) into(figures map[string]any, prefix string) map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range t.n {
		figures[prefix+"_"+k] = v
	}
	return figures
}

// except returns the total of the counts not named in allowed.
func (t *exhaustTally) except(allowed ...string) (int, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	total, names := 0, []string{}
	for k, v := range t.n {
		if !slices.Contains(allowed, k) {
			total += v
			names = append(names, fmt.Sprintf("%s=%d", k, v))
		}
	}
	return total, strings.Join(names, " ")
}

// exhaustBystander is another client using its own stream while a test
// floods the worker: a set, then a get of what it wrote, over and over.
// Every one of its requests must be answered with success.
type exhaustBystander struct {
	stop, done chan struct{}
	ok         atomic.Int64
	failures   []string
	mu         sync.Mutex
}

func exhaustBystand(tb testing.TB, url, stream string) *exhaustBystander {
	tb.Helper()
	st := client.New(connect(tb, url)).Stream(stream)
	b := &exhaustBystander{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for i := 0; ; i++ {
			select {
			case <-b.stop:
				return
			default:
			}
			data := fmt.Sprintf("bystander-%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ack, err := st.Set(ctx, []byte(data))
			var m *client.Msg
			if err == nil {
				m, err = st.Get(ctx, ack.Seq)
			}
			cancel()
			switch {
			case err != nil:
				b.fail(fmt.Sprintf("%s: %v", data, err))
			case string(m.Data) != data:
				b.fail(fmt.Sprintf("get seq %d = %q, want %q", ack.Seq, m.Data, data))
			default:
				b.ok.Add(1)
			}
			time.Sleep(5 * time.Millisecond) // a client at human pace, not a second flood
		}
	}()
	tb.Cleanup(b.finish)
	return b
}

func (b *exhaustBystander) fail(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = append(b.failures, s)
}

func (b *exhaustBystander) finish() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
}

// check fails unless the bystander was served all along.
func (b *exhaustBystander) check(tb testing.TB) {
	tb.Helper()
	b.finish()
	if len(b.failures) > 0 {
		tb.Errorf("the other client failed %d times (%d served), first: %s", len(b.failures), b.ok.Load(), b.failures[0])
	}
	if b.ok.Load() == 0 {
		tb.Errorf("the other client was never served")
	}
}

// exhaustPipe sends requests on one connection and routes their replies
// through one wildcard inbox subscription without a pending limit, so
// that a reply that comes after its caller gave up is still seen.
type exhaustPipe struct {
	nc     *nats.Conn
	prefix string

	mu      sync.Mutex
	next    uint64
	waiting map[string]*exhaustCall
	late    func(c *exhaustCall, m *nats.Msg) // a reply after the caller gave up
}

// exhaustCall is one request in flight.
type exhaustCall struct {
	sent   time.Time
	ch     chan *nats.Msg
	gaveUp bool
	tag    any
}

func exhaustNewPipe(tb testing.TB, url string, late func(*exhaustCall, *nats.Msg)) *exhaustPipe {
	tb.Helper()
	nc := connect(tb, url)
	p := &exhaustPipe{nc: nc, prefix: nc.NewInbox(), waiting: map[string]*exhaustCall{}, late: late}
	sub, err := nc.Subscribe(p.prefix+".*", p.dispatch)
	if err != nil {
		tb.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	return p
}

func (p *exhaustPipe) dispatch(m *nats.Msg) {
	p.mu.Lock()
	c := p.waiting[m.Subject]
	delete(p.waiting, m.Subject)
	late := c == nil || c.gaveUp
	if !late {
		c.ch <- m // buffered: wait takes it, under the same lock if it timed out
	}
	p.mu.Unlock()
	// A reply after the caller gave up, or a second reply to one request
	// (c nil), goes to the late handler.
	if late && p.late != nil {
		p.late(c, m)
	}
}

// send publishes a request; its reply comes on the call's channel.
func (p *exhaustPipe) send(subject string, body []byte, tag any) (*exhaustCall, error) {
	c := &exhaustCall{sent: time.Now(), ch: make(chan *nats.Msg, 1), tag: tag}
	p.mu.Lock()
	p.next++
	reply := p.prefix + "." + strconv.FormatUint(p.next, 10)
	p.waiting[reply] = c
	p.mu.Unlock()
	return c, p.nc.PublishRequest(subject, reply, body)
}

// wait returns the call's reply, or nil after timeout: the caller gives
// up, and a later reply goes to the late handler.
func (p *exhaustPipe) wait(c *exhaustCall, timeout time.Duration) *nats.Msg {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-c.ch:
		return m
	case <-t.C:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case m := <-c.ch:
		return m
	default:
		c.gaveUp = true
		return nil
	}
}

// outstanding is the number of requests not answered yet.
func (p *exhaustPipe) outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiting)
}

// exhaustItems is the body of a setmany of n items of size bytes each,
// with msg ids tag-0 … tag-(n-1) and data starting with the same.
func exhaustItems(tag string, n, size int) []byte {
	var b strings.Builder
	b.WriteByte('[')
	pad := strings.Repeat("x", size)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		id := tag + "-" + strconv.Itoa(i)
		data := (id + " " + pad)[:max(size, len(id))]
		fmt.Fprintf(&b, `{"data":%q,"msg_id":%q}`, base64.StdEncoding.EncodeToString([]byte(data)), id)
	}
	b.WriteByte(']')
	return []byte(b.String())
}

// exhaustPage requests one getall page and reads it to its end: true
// for a whole page, false for a 429 overloaded. Anything else fails.
func exhaustPage(tb testing.TB, nc *nats.Conn, subject string, body []byte) bool {
	tb.Helper()
	_, end := getAllRawWait(tb, nc, subject, body, 5*time.Minute)
	switch r := exhaustReason(end); r {
	case "overloaded":
		return false
	case "ok":
		return true
	default:
		tb.Fatalf("getall %s: %s %s", subject, r, end.Data)
		return false
	}
}

// exhaustCount is the number of streams under prefix, paging through list.
func exhaustCount(tb testing.TB, c *client.Client, prefix string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, after := 0, ""
	for {
		names, more, err := c.ListPage(ctx, prefix, after, 1000)
		if err != nil {
			tb.Fatalf("List(%s) error = %v", prefix, err)
		}
		n += len(names)
		if !more || len(names) == 0 {
			return n
		}
		after = names[len(names)-1]
	}
}

func TestExhaust_ManyStreams(t *testing.T) {
	attempts := pick(5_000, 100_000)
	quota := attempts * 9 / 10
	const budget = 32 << 20
	s, w, _ := exhaustWorker(t, "--max-streams-per-namespace", strconv.Itoa(quota), "--memory-budget", strconv.Itoa(budget))
	sampler := exhaustSample(t, connect(t, s.ClientURL()), w)
	other := exhaustBystand(t, s.ClientURL(), "other.s")

	// One client creates streams with one set each, 32 at a time.
	nc := connect(t, s.ClientURL())
	var tally exhaustTally
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(attempts) {
					return
				}
				m, err := nc.Request(fmt.Sprintf("persist.api.set.many.s%d", i), []byte("x"), 30*time.Second)
				if err != nil {
					tally.add("client_"+err.Error(), 1)
					continue
				}
				tally.add(exhaustReason(m), 1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	sampler.check(t, budget+exhaustBaseRSS+exhaustSlack)
	other.check(t)

	if got, want := tally.get("ok"), quota; got != want {
		t.Errorf("streams created = %d, want the quota %d", got, want)
	}
	if got, want := tally.get("too_many_streams"), attempts-quota; got != want {
		t.Errorf("too_many_streams replies = %d, want %d", got, want)
	}
	if n, what := tally.except("ok", "too_many_streams"); n > 0 {
		t.Errorf("unexpected outcomes: %s", what)
	}
	if got, want := exhaustCount(t, client.New(nc), "many"), quota; got != want {
		t.Errorf("list many: %d streams, want %d", got, want)
	}
	figures := tally.into(sampler.figures(), "replies")
	figures["attempts"], figures["quota"], figures["seconds"] = attempts, quota, elapsed.Seconds()
	figures["memory_budget_mib"], figures["bystander_ok"] = budget>>20, other.ok.Load()
	report(t, "exhaust_many_streams", figures)
}

func TestExhaust_FasterThanWrites(t *testing.T) {
	requests := pick(30_000, 100_000)
	s, w, _ := exhaustWorker(t)
	nc := connect(t, s.ClientURL())
	sampler := exhaustSample(t, nc, w)
	other := exhaustBystand(t, s.ClientURL(), "other.s")

	// Four connections publish 100-item setmany requests to one stream as
	// fast as they can, without waiting for replies: reading a request
	// costs the worker far less than writing its items, so more than the
	// 10,000 requests that may wait for one stream arrive.
	var tally exhaustTally
	var items atomic.Int64
	var wg sync.WaitGroup
	var pipes []*exhaustPipe
	body := []byte("[" + strings.Repeat(`{"data":"eA=="},`, 99) + `{"data":"eA=="}]`)
	for range 4 {
		p := exhaustNewPipe(t, s.ClientURL(), func(_ *exhaustCall, _ *nats.Msg) { tally.add("extra_reply", 1) })
		pipes = append(pipes, p)
		wg.Go(func() {
			for range requests / 4 {
				call, err := p.send("persist.api.setmany.fast.s", body, nil)
				if err != nil {
					tally.add("publish_error", 1)
					continue
				}
				go func() {
					m := p.wait(call, 5*time.Minute)
					if m == nil {
						return // counted as unanswered below
					}
					r := exhaustReason(m)
					tally.add(r, 1)
					if r == "ok" {
						items.Add(int64(strings.Count(string(m.Data), `"seq"`)))
					}
				}()
			}
		})
	}
	sendStart := time.Now()
	wg.Wait()
	sendSeconds := time.Since(sendStart).Seconds()
	// Every request is answered, sooner or later.
	deadline := time.Now().Add(pick(2*time.Minute, 5*time.Minute))
	unanswered := 0
	for _, p := range pipes {
		for p.outstanding() > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		unanswered += p.outstanding()
	}
	sampler.check(t, exhaustDefaultBudget+exhaustQueueBytes+exhaustBaseRSS+exhaustSlack)
	other.check(t)

	stats, _, err := exhaustStats(nc, "set")
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(nc)
	inv, err := c.Stream("fast.s").Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stored := int(inv.Count)
	figures := tally.into(sampler.figures(), "replies")
	for k, v := range exhaustShedFigures(stats) {
		figures[k] = v
	}
	figures["requests"], figures["unanswered"], figures["send_seconds"] = requests, unanswered, sendSeconds
	figures["items_acked"], figures["items_stored"] = items.Load(), stored
	figures["bystander_ok"] = other.ok.Load()
	report(t, "exhaust_faster_than_writes", figures)

	if unanswered > 0 {
		t.Errorf("%d of %d requests never answered", unanswered, requests)
	}
	if tally.get("overloaded") == 0 {
		t.Errorf("no 429 overloaded among %d requests sent faster than the worker writes", requests)
	}
	if n, what := tally.except("ok", "overloaded"); n > 0 {
		t.Errorf("unexpected outcomes: %s", what)
	}
	// Nothing is applied without an answer saying so.
	if got, want := int64(stored), items.Load(); got != want {
		t.Errorf("messages stored = %d, want the %d acknowledged", got, want)
	}
}

func TestExhaust_SlowConsumer(t *testing.T) {
	s, w, _ := exhaustWorker(t)
	nc := connect(t, s.ClientURL())
	c := client.New(nc)
	ctx := context.Background()
	// A stream whose getall pages are 8 MiB.
	const msgs, size = 20_000, 1000
	big := c.Stream("slow.big")
	for i := 0; i < msgs; i += 1000 {
		items := make([]client.Item, 1000)
		for j := range items {
			items[j] = client.Item{Data: []byte(strings.Repeat("z", size))}
		}
		if _, err := big.SetMany(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	body := []byte(`{"max_msgs":10000}`)
	perPage, _ := getAllRaw(t, nc, "persist.api.getall.slow.big", body)
	sampler := exhaustSample(t, nc, w)
	other := exhaustBystand(t, s.ClientURL(), "other.s")
	pages := pick(40, 400)

	// A nats.go client whose inbox holds at most 10 messages and is
	// never read: the client drops what does not fit.
	lazy, err := nats.Connect(s.ClientURL(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer lazy.Close()
	lazyInbox := lazy.NewInbox()
	lazySub, err := lazy.SubscribeSync(lazyInbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := lazySub.SetPendingLimits(10, 64<<10); err != nil {
		t.Fatal(err)
	}
	// A client that never reads its socket at all: the server buffers
	// for it up to its max_pending and then closes the connection.
	raw, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprintf(raw, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\nSUB _INBOX.raw.* 1\r\n")
	for i := range pages {
		if err := lazy.PublishRequest("persist.api.getall.slow.big", lazyInbox, body); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(raw, "PUB persist.api.getall.slow.big _INBOX.raw.%d %d\r\n%s\r\n", i, len(body), body)
	}
	if err := lazy.Flush(); err != nil {
		t.Fatal(err)
	}
	slowBefore := s.NumSlowConsumers()

	// The worker answers every page request, a page or 429 overloaded if
	// it waited longer than --max-wait, in order for one stream: once a
	// later request of the stream gets its page, all before it were
	// answered.
	sentinels := 0
	for answered := false; !answered; sentinels++ {
		answered = exhaustPage(t, nc, "persist.api.getall.slow.big", body)
	}
	if got := len(readAll(t, big)); got != msgs {
		t.Errorf("a reading client got %d messages, want %d", got, msgs)
	}
	sampler.check(t, exhaustDefaultBudget+exhaustBaseRSS+exhaustSlack)
	other.check(t)
	// The server closed the client that never read, not the worker.
	if out := w.stderr.String(); strings.Contains(out, "NATS disconnected") {
		t.Errorf("the worker lost its NATS connection:\n%s", out)
	}
	dropped, _ := lazySub.Dropped()
	figures := sampler.figures()
	lazyGot, _, _ := lazySub.Pending()
	figures["pages_requested"], figures["page_msgs"], figures["sentinels"] = 2*pages, len(perPage), sentinels
	figures["lazy_client_received"] = lazyGot + dropped
	figures["lazy_client_dropped"], figures["server_slow_consumers"] = dropped, s.NumSlowConsumers()-slowBefore
	figures["bystander_ok"] = other.ok.Load()
	if d, _, err := exhaustStats(nc, "set"); err == nil {
		for k, v := range exhaustShedFigures(d) {
			figures[k] = v
		}
	}
	report(t, "exhaust_slow_consumer", figures)
}

func TestExhaust_DistinctStreams(t *testing.T) {
	maxStreams := pick(3_000, 30_000)
	duration := pick(10*time.Second, 2*time.Minute)
	const budget = 32 << 20
	s, w, data := exhaustWorker(t, "--max-streams", strconv.Itoa(maxStreams), "--memory-budget", strconv.Itoa(budget))
	// The bystander's stream exists before the quota is reached.
	other := exhaustBystand(t, s.ClientURL(), "other.s")
	waitFor(t, 30*time.Second, func() bool { return other.ok.Load() > 0 })
	sampler := exhaustSample(t, connect(t, s.ClientURL()), w)

	// 8 clients, 8 requests in flight each: a set to a random stream of
	// 16 namespaces, then a get of it.
	var tally exhaustTally
	var wg sync.WaitGroup
	// For duration, and on until the quota is reached (however slow the
	// machine), within a generous limit.
	stop, limit := time.Now().Add(duration), time.Now().Add(duration+5*time.Minute)
	running := func() bool {
		now := time.Now()
		return now.Before(stop) || tally.get("set_too_many_streams") == 0 && now.Before(limit)
	}
	start := time.Now()
	for range 8 {
		nc := connect(t, s.ClientURL())
		for range 8 {
			wg.Go(func() {
				for running() {
					stream := fmt.Sprintf("ns%d.s%x", rand.IntN(16), rand.Uint64())
					m, err := nc.Request("persist.api.set."+stream, []byte("x"), 30*time.Second)
					if err != nil {
						tally.add("client_"+err.Error(), 1)
						continue
					}
					r := exhaustReason(m)
					tally.add("set_"+r, 1)
					if r != "ok" {
						continue
					}
					if m, err = nc.Request("persist.api.get."+stream, []byte(`{"seq":1}`), 30*time.Second); err != nil {
						tally.add("client_"+err.Error(), 1)
						continue
					}
					tally.add("get_"+exhaustReason(m), 1)
				}
			})
		}
	}
	wg.Wait()
	sampler.check(t, budget+exhaustBaseRSS+exhaustSlack)
	other.check(t)
	files := len(dbFiles(t, data))
	figures := tally.into(sampler.figures(), "replies")
	figures["max_streams"], figures["stream_files"], figures["seconds"] = maxStreams, files, time.Since(start).Seconds()
	figures["memory_budget_mib"], figures["bystander_ok"] = budget>>20, other.ok.Load()
	report(t, "exhaust_distinct_streams", figures)

	if files > maxStreams {
		t.Errorf("%d stream files, above --max-streams %d", files, maxStreams)
	}
	if tally.get("set_too_many_streams") == 0 {
		t.Errorf("the quota of %d streams was never reached (%d created)", maxStreams, tally.get("set_ok"))
	}
	if got, want := tally.get("get_ok"), tally.get("set_ok"); got != want {
		t.Errorf("gets of created streams answered %d times, want %d", got, want)
	}
	if n, what := tally.except("set_ok", "get_ok", "set_too_many_streams", "set_overloaded"); n > 0 {
		t.Errorf("unexpected outcomes: %s", what)
	}
}

// exhaustBatch is one setmany of a flood writer, retried with the same
// msg ids until acknowledged or the flood ends.
type exhaustBatch struct {
	id       string
	items    int
	attempts int
	acked    bool // an attempt was answered ok within the client's timeout
	lateOK   bool // an attempt was answered ok after the client gave up
}

// exhaustFlood runs writers sending items-item setmany requests of size
// bytes each to one stream with a client timeout, for d, against a worker
// with --max-wait maxWait (0: its default, 5 s), and reports what the
// worker answered and stored.
func exhaustFlood(t *testing.T, name string, writers, items, size int, timeout, d, maxWait time.Duration) {
	var args []string
	if maxWait > 0 {
		args = []string{"--max-wait", maxWait.String()}
	} else {
		maxWait = 5 * time.Second
	}
	s, w, _ := exhaustWorker(t, args...)
	nc := connect(t, s.ClientURL())
	sampler := exhaustSample(t, nc, w)
	const stream = "flood.s"

	var mu sync.Mutex
	var batches []*exhaustBatch
	var tally exhaustTally      // per attempt: ok, overloaded, …, timeout; late_<reason>
	var lateOKMax time.Duration // the longest a request applied late took to be answered
	late := func(c *exhaustCall, m *nats.Msg) {
		r := exhaustReason(m)
		tally.add("late_"+r, 1)
		if c == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if r == "ok" {
			c.tag.(*exhaustBatch).lateOK = true
			lateOKMax = max(lateOKMax, time.Since(c.sent))
		}
	}
	pipes := make([]*exhaustPipe, 8)
	for i := range pipes {
		pipes[i] = exhaustNewPipe(t, s.ClientURL(), late)
	}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for wr := range writers {
		p := pipes[wr%len(pipes)]
		wg.Go(func() {
			for n := 0; time.Now().Before(stop); n++ {
				b := &exhaustBatch{id: fmt.Sprintf("w%d-b%d", wr, n), items: items}
				mu.Lock()
				batches = append(batches, b)
				mu.Unlock()
				body := exhaustItems(b.id, items, size)
				for !b.acked && time.Now().Before(stop) {
					mu.Lock()
					b.attempts++
					mu.Unlock()
					c, err := p.send("persist.api.setmany."+stream, body, b)
					if err != nil {
						tally.add("publish_error", 1)
						time.Sleep(100 * time.Millisecond)
						continue
					}
					m := p.wait(c, timeout)
					if m == nil {
						tally.add("timeout", 1)
						continue // retried at once, with the same msg ids
					}
					r := exhaustReason(m)
					tally.add(r, 1)
					if r == "ok" {
						mu.Lock()
						b.acked = true
						mu.Unlock()
					} else {
						time.Sleep(100 * time.Millisecond) // back off after 429
					}
				}
			}
		})
	}
	wg.Wait()
	// Every request is answered, late or not.
	unanswered := 0
	deadline := time.Now().Add(time.Minute)
	for _, p := range pipes {
		for p.outstanding() > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		unanswered += p.outstanding()
	}
	sampler.finish()
	stats, _, statsErr := exhaustStats(nc, "set")

	// What was stored, by batch.
	stored := map[string]int{}
	storedItems, duplicates := 0, 0
	seen := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for m, err := range client.New(nc).Stream(stream).GetAll(ctx, client.Query{MaxMsgs: 10000}) {
		if err != nil {
			t.Fatalf("GetAll error = %v", err)
		}
		id, _, _ := strings.Cut(string(m.Data), " ")
		if seen[id] {
			duplicates++
		}
		seen[id] = true
		batch := id[:strings.LastIndexByte(id, '-')]
		stored[batch]++
		storedItems++
	}
	ackedItems, unackedStored, silent, partial, neverAcked := 0, 0, 0, 0, 0
	mu.Lock() // a late reply may still come
	defer mu.Unlock()
	for _, b := range batches {
		n := stored[b.id]
		if n != 0 && n != b.items {
			partial++
		}
		switch {
		case b.acked:
			ackedItems += b.items
		case n > 0 && b.lateOK:
			unackedStored += n
		case n > 0:
			silent += n
		default:
			neverAcked++
		}
	}
	figures := tally.into(sampler.figures(), "replies")
	for k, v := range exhaustShedFigures(stats) {
		figures[k] = v
	}
	figures["writers"], figures["items_per_request"], figures["timeout_ms"] = writers, items, timeout.Milliseconds()
	figures["seconds"], figures["batches"], figures["unanswered"] = d.Seconds(), len(batches), unanswered
	figures["items_acked"], figures["items_stored"] = ackedItems, storedItems
	figures["stored_unacked_items"], figures["stored_silently_items"] = unackedStored, silent
	figures["duplicates"], figures["late_ok_latency_max_ms"] = duplicates, lateOKMax.Milliseconds()
	figures["max_wait_ms"], figures["batches_not_stored"] = maxWait.Milliseconds(), neverAcked
	figures["server_slow_consumers"] = s.NumSlowConsumersClients()
	report(t, name, figures)

	if statsErr != nil {
		t.Errorf("stats: %v", statsErr)
	}
	// A worker that reads its requests slower than they come is cut off
	// by the server (its max_pending), and what it held is lost.
	if out := w.stderr.String(); strings.Contains(out, "NATS disconnected") {
		t.Errorf("the worker lost its NATS connection:\n%s", out)
	}
	if unanswered > 0 {
		t.Errorf("%d requests never answered", unanswered)
	}
	if n, ok := exhaustSlowConsumers(stats); !ok || n > 0 {
		t.Errorf("slow-consumer count %v (reported: %v), want 0", n, ok)
	}
	if !slices.ContainsFunc(slices.Collect(maps.Keys(stats)), func(k string) bool { return strings.Contains(k, "shed") }) {
		t.Errorf("stats report no shed count: %v", stats)
	}
	// A write is stored only when an attempt was answered ok, in time or
	// after the client gave up; never silently, never twice, never half.
	if silent > 0 || duplicates > 0 || partial > 0 {
		t.Errorf("stored without any ok reply: %d items; duplicates %d; partly stored batches %d", silent, duplicates, partial)
	}
	// A request is applied only if it waited at most maxWait; then comes
	// its group's commit. Being answered far later means it was applied
	// long after its client gave up, which --max-wait is there to stop.
	if bound := maxWait + 10*time.Second; lateOKMax > bound {
		t.Errorf("a write was acknowledged %v after it was sent, past --max-wait %v and a commit", lateOKMax, maxWait)
	}
	if ackedItems > storedItems {
		t.Errorf("%d items acknowledged but %d stored", ackedItems, storedItems)
	}
}

func TestExhaust_Flood(t *testing.T) {
	d := pick(20*time.Second, 60*time.Second)
	// The operator's setting: --max-wait below the clients' timeout, so
	// that what waited too long is refused before the client gives up.
	t.Run("100x2s", func(t *testing.T) {
		exhaustFlood(t, "flood_100x2s", 64, 100, 1000, 2*time.Second, d, time.Second)
	})
	t.Run("500x1s", func(t *testing.T) {
		exhaustFlood(t, "flood_500x1s", 64, 500, 1000, time.Second, d, 500*time.Millisecond)
	})
	if !longMode {
		return
	}
	// The default --max-wait (5 s) is longer than these clients wait.
	t.Run("100x2s_default", func(t *testing.T) {
		exhaustFlood(t, "flood_100x2s_default_max_wait", 64, 100, 1000, 2*time.Second, d, 0)
	})
	t.Run("500x1s_default", func(t *testing.T) {
		exhaustFlood(t, "flood_500x1s_default_max_wait", 64, 500, 1000, time.Second, d, 0)
	})
}
