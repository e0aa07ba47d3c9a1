package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// DefaultInstanceCheckInterval is how often a broker looks for another
// live worker serving its prefix (see [Options.InstanceCheckInterval]).
const DefaultInstanceCheckInterval = 10 * time.Second

// Bounds of one discovery round: the wait for the first reply, the wait
// after the latest one, and the most replies read.
const (
	discoverWait  = time.Second
	discoverStall = 250 * time.Millisecond
	discoverMax   = 10_000
)

// discoverReplyPrefix starts the reply subjects of discovery requests.
const discoverReplyPrefix = "$SRV._persist_reply."

// ErrPrefixInUse is returned by [New], and sent on [Broker.Conflict], when
// another live worker serves the same prefix: two workers in one queue
// group, each with its own data directory, would split every stream's
// requests between them.
var ErrPrefixInUse = errors.New("another worker serves this prefix")

// instance is another micro service found serving the broker's prefix.
type instance struct {
	name, id, version string
	started           time.Time // zero: unknown
	subject           string    // one of its endpoint subjects under the prefix
	clash             string    // why it cannot serve beside this one (partitioned mode)
}

// String names the instance for an error message; its parts come from
// the wire, so they are bounded and kept printable.
func (in instance) String() string {
	s := fmt.Sprintf("service %q id %s", printable(in.name), printable(in.id))
	if in.version != "" {
		s += " version " + printable(in.version)
	}
	if !in.started.IsZero() {
		s += " started " + in.started.UTC().Format(time.RFC3339Nano)
	}
	s += " (endpoint " + printable(in.subject) + ")"
	if in.clash != "" {
		s += ": " + in.clash
	}
	return s
}

// printable bounds s to 64 bytes and replaces what is not a printable,
// non-space character.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r) {
			return '?'
		}
		return r
	}, s)
}

// olderThan orders two instances by start time, then by id: of two
// workers on one prefix, the younger stops.
func (in instance) olderThan(startedOther time.Time, idOther string) bool {
	if !in.started.Equal(startedOther) {
		return in.started.Before(startedOther)
	}
	return in.id < idOther
}

// others asks every micro service on the connection ($SRV.INFO) which
// serve an endpoint under <prefix>.api., whatever their name, and returns
// those whose id is not self, with their STATS (version, start time) where
// they answer. A partitioned broker keeps only those that cannot serve
// beside it (see partitions.clash). Nothing to ask (not connected) is an
// error.
func (b *Broker) others(self string) ([]instance, error) {
	if !b.nc.IsConnected() {
		return nil, nats.ErrConnectionReconnecting
	}
	msgs, err := discover(b.nc, "$SRV.INFO", discoverMax)
	if err != nil {
		return nil, err
	}
	api := b.prefix + ".api."
	var found []instance
	seen := map[string]bool{}
	for _, m := range msgs {
		var info micro.Info
		if json.Unmarshal(m.Data, &info) != nil || info.ID == "" || info.ID == self || seen[info.ID] {
			continue
		}
		for _, ep := range info.Endpoints {
			if strings.HasPrefix(ep.Subject, api) {
				seen[info.ID] = true
				in := instance{name: info.Name, id: info.ID, version: info.Version, subject: ep.Subject}
				if b.parts != nil {
					if in.clash = b.parts.clash(info.Metadata); in.clash == "" {
						break
					}
				}
				found = append(found, in)
				break
			}
		}
	}
	for i := range found {
		subj, err := micro.ControlSubject(micro.StatsVerb, found[i].name, found[i].id)
		if err != nil {
			continue
		}
		msgs, err := discover(b.nc, subj, 1)
		if err != nil || len(msgs) == 0 {
			continue
		}
		var st micro.Stats
		if json.Unmarshal(msgs[0].Data, &st) == nil && st.ID == found[i].id {
			found[i].started = st.Started
			if st.Version != "" {
				found[i].version = st.Version
			}
		}
	}
	return found, nil
}

// discover sends a micro discovery request on subj and gathers at most
// limit replies: until nobody responds, discoverWait without a first reply,
// or discoverStall after the latest. The replies come to a subject under
// $SRV., which the worker's user may subscribe to (PROTOCOL.md section 1),
// not to an inbox, which it may not.
func discover(nc *nats.Conn, subj string, limit int) ([]*nats.Msg, error) {
	inbox := nc.NewInbox()
	reply := discoverReplyPrefix + inbox[strings.LastIndexByte(inbox, '.')+1:]
	sub, err := nc.SubscribeSync(reply)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subj, reply, nil); err != nil {
		return nil, err
	}
	var msgs []*nats.Msg
	deadline := time.Now().Add(discoverWait)
	wait := discoverWait
	for len(msgs) < limit {
		m, err := sub.NextMsg(wait)
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
			break // no (more) replies; nats.go reports "no responders" (no service at all) as an error
		}
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
		if wait = min(discoverStall, time.Until(deadline)); wait <= 0 {
			break
		}
	}
	return msgs, nil
}

// checkAlone is New's check, before the endpoints are subscribed: another
// live worker on the prefix makes the start fail, naming it. When NATS is
// not reached yet, the periodic check (and the one at connect) decides.
func (b *Broker) checkAlone() error {
	if b.opts.InstanceCheckInterval < 0 || !b.nc.IsConnected() {
		return nil
	}
	found, err := b.others("")
	if err != nil {
		b.log.Warn("look for other workers on the prefix", "err", err)
		return nil
	}
	if len(found) > 0 {
		return fmt.Errorf("broker: %w %s.api.>: %s; run one worker per prefix, or partitioned workers that share the partitions", ErrPrefixInUse, b.prefix, found[0])
	}
	return nil
}

// singleCheck is the periodic check's goroutine and its stop.
type singleCheck struct {
	stop chan struct{}
	done sync.WaitGroup
}

// startSingle starts the periodic check: every InstanceCheckInterval, and
// at every (re)connect, the broker asks for other live workers on its
// prefix. Of two, the younger (later start, then greater id) stops its
// endpoints, logs an error naming the older one and sends ErrPrefixInUse
// on [Broker.Conflict]; the older keeps serving.
func (b *Broker) startSingle() {
	b.single.stop = make(chan struct{})
	if b.opts.InstanceCheckInterval < 0 {
		return
	}
	connected := b.nc.StatusChanged(nats.CONNECTED)
	b.single.done.Go(func() {
		defer b.nc.RemoveStatusListener(connected)
		t := time.NewTicker(b.opts.InstanceCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-b.single.stop:
				return
			case <-t.C:
			case <-connected:
			}
			if b.yield() {
				return
			}
		}
	})
}

// yield runs one check and reports whether this broker stopped serving.
func (b *Broker) yield() bool {
	info := b.svc.Info()
	started := b.svc.Stats().Started
	found, err := b.others(info.ID)
	if err != nil {
		b.log.Debug("look for other workers on the prefix", "err", err)
		return false
	}
	for _, in := range found {
		if in.started.IsZero() {
			b.log.Warn("another worker serves the same prefix; its start time is unknown", "other", in.String())
			continue
		}
		if !in.olderThan(started, info.ID) {
			b.log.Warn("another worker serves the same prefix; it started later and stops", "other", in.String())
			continue
		}
		err := fmt.Errorf("broker: %w %s.api.>: %s, older than this one (id %s started %s); this worker stops serving",
			ErrPrefixInUse, b.prefix, in, info.ID, started.UTC().Format(time.RFC3339Nano))
		b.log.Error("another worker serves the same prefix; stopping", "other", in.String(), "err", err)
		if serr := b.svc.Stop(); serr != nil {
			b.log.Error("stop service", "err", serr)
		}
		b.stopPartitionSubs()
		select {
		case b.conflict <- err:
		default:
		}
		return true
	}
	return false
}

// stopSingle ends the periodic check and waits for it.
func (b *Broker) stopSingle() {
	if b.single.stop != nil {
		close(b.single.stop)
	}
	b.single.done.Wait()
}

// Conflict receives one error, wrapping [ErrPrefixInUse], when the broker
// found an older live worker serving its prefix and stopped taking
// requests. The caller should then call [Broker.Shutdown] (which answers
// what was received and closes the streams) and report the error.
func (b *Broker) Conflict() <-chan error { return b.conflict }
