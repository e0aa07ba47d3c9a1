package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/subjects"
)

// DefaultServiceName is the micro service name of the workers (their
// --name) that [Client.Workers] asks; [WithServiceName] sets another.
const DefaultServiceName = "persist"

// WithServiceName sets the micro service name of the workers that
// [Client.Workers] asks; the default is [DefaultServiceName].
func WithServiceName(name string) Option { return func(c *Client) { c.service = name } }

// Worker is one running worker of the service, as its micro stats show
// it.
type Worker struct {
	ID      string    `json:"id"` // micro instance id: what Locate and the Persist-Worker header name
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`

	// Partitions are the partitions the worker serves now, ascending:
	// nil when it is not partitioned, empty when it is and serves none
	// at the moment (leases on the move). PartitionCount is the number
	// of partitions of the prefix, 0 when unpartitioned; Leases reports
	// that the worker claims its partitions through leases rather than
	// serving a static set.
	Partitions     []int `json:"partitions"`
	PartitionCount int   `json:"partition_count,omitempty"`
	Leases         bool  `json:"leases,omitempty"`

	OpenStreams int `json:"open_streams"` // streams open now
}

const (
	// workersQuiet is how long Workers waits for one more reply.
	workersQuiet = 300 * time.Millisecond
	// maxWorkers bounds the replies Workers reads.
	maxWorkers = 1024
	// maxStatsReply bounds the size of a reply Workers decodes.
	maxStatsReply = 256 << 10
	// statsResponseType is the type of a micro stats reply.
	statsResponseType = "io.nats.micro.v1.stats_response"
)

// Workers asks every worker of the service ($SRV.STATS.<name>, the name
// [DefaultServiceName] unless [WithServiceName] set another) which serves
// the client's prefix, and returns them sorted by ID. It reads replies
// until none came for 300 ms, or none can come (no responders), bounded
// by ctx and the client's timeout ([WithTimeout]); when that bound is
// reached it returns the replies so far. No worker answering is an empty
// result, not an error.
//
// The replies come to an inbox of the connection: under "_INBOX." or the
// connection's nats.CustomInboxPrefix (a user that may subscribe only
// under "$SRV._persist_reply." connects with
// nats.CustomInboxPrefix("$SRV._persist_reply")). The connection's user
// needs permission to publish on $SRV.STATS.<name> and to receive on that
// inbox, which the worker's user has but a client's user often has not:
// a permission violation on either is returned as an error wrapping
// nats.ErrPermissionViolation.
//
// Replies are not trusted: at most 1024 are read, and one that is larger
// than 256 KiB, does not parse, or is of a service of another name or
// prefix is skipped.
func (c *Client) Workers(ctx context.Context) ([]Worker, error) {
	if err := subjects.ValidatePrefix(c.prefix); err != nil {
		return nil, fmt.Errorf("client: prefix %q: %w", c.prefix, err)
	}
	if c.service == "" || strings.ContainsAny(c.service, ".*> \t\r\n") {
		return nil, fmt.Errorf("client: service name %q: not a single subject token", c.service)
	}
	subj := "$SRV.STATS." + c.service
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("client: workers: %w", err)
	}
	defer sub.Unsubscribe()
	wctx, cancel := c.withTimeout(ctx)
	defer cancel()
	before := c.nc.LastError()
	if err := c.nc.PublishRequest(subj, inbox, nil); err != nil {
		return nil, fmt.Errorf("client: workers: %w", err)
	}
	// The server answers the flush after it refused the subscription or
	// the publish, if it did.
	if err := c.nc.FlushWithContext(wctx); err != nil {
		return nil, workersEnd(ctx, fmt.Errorf("client: workers: %w", err))
	}
	// (errors.Is first: a violation is a comparable *fmt.wrapError.)
	if err := c.nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) && err != before &&
		(strings.Contains(err.Error(), `"`+subj+`"`) || strings.Contains(err.Error(), `"`+inbox+`"`)) {
		return nil, fmt.Errorf("client: workers: %w", err)
	}
	var ws []Worker
	seen := map[string]bool{}
	for n := 0; n < maxWorkers; n++ {
		qctx, qcancel := context.WithTimeout(wctx, workersQuiet)
		m, err := sub.NextMsgWithContext(qctx)
		qcancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if wctx.Err() != nil || qctx.Err() != nil {
				break // the quiet period, or the client's timeout
			}
			return nil, fmt.Errorf("client: workers: %w", err)
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			break // no responders
		}
		w, ok := c.parseWorker(m.Data)
		if ok && !seen[w.ID] {
			seen[w.ID] = true
			ws = append(ws, w)
		}
	}
	slices.SortFunc(ws, func(a, b Worker) int { return strings.Compare(a.ID, b.ID) })
	return ws, nil
}

// workersEnd is ctx's error if it ended, else err.
func workersEnd(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// parseWorker reads a worker from its micro stats reply (untrusted);
// ok is false for a reply that is not a persist worker's of the client's
// service and prefix.
func (c *Client) parseWorker(data []byte) (w Worker, ok bool) {
	if len(data) > maxStatsReply {
		return w, false
	}
	var st struct {
		Type      string            `json:"type"`
		Name      string            `json:"name"`
		ID        string            `json:"id"`
		Version   string            `json:"version"`
		Started   time.Time         `json:"started"`
		Metadata  map[string]string `json:"metadata"`
		Endpoints []struct {
			Name string          `json:"name"`
			Data json.RawMessage `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(data, &st); err != nil || st.Type != statsResponseType ||
		st.ID == "" || st.Name != c.service || st.Metadata["prefix"] != c.prefix {
		return w, false
	}
	var stats struct {
		OpenStreams int    `json:"open_streams"`
		Partitions  string `json:"partitions"`
	}
	found := false
	for _, ep := range st.Endpoints {
		if ep.Name == st.Metadata["worker_stats_endpoint"] {
			found = json.Unmarshal(ep.Data, &stats) == nil
			break
		}
	}
	if !found {
		return w, false
	}
	w = Worker{ID: st.ID, Name: st.Name, Version: st.Version, Started: st.Started, OpenStreams: stats.OpenStreams}
	if count, set := st.Metadata["partition_count"]; set {
		n, err := strconv.Atoi(count)
		if err != nil || subjects.ValidatePartitions(n) != nil {
			return w, false
		}
		parts := []int{}
		if stats.Partitions != "" {
			if parts, err = subjects.ParsePartitions(stats.Partitions, n); err != nil {
				return w, false
			}
			slices.Sort(parts)
		}
		w.Partitions, w.PartitionCount, w.Leases = parts, n, st.Metadata["partitions"] == "leases"
	}
	return w, true
}
