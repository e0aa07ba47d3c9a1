package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-persist/persist/store"
	"github.com/nats-persist/persist/subjects"
)

// BenchmarkPartitionedSetParallel64 measures set requests of 64
// concurrent requesters on 8 streams (8 namespaces) through the
// servers' partition mappings, to one static worker serving every
// partition; header=off takes the Persist-Worker header away, as the
// worker was before it had one.
func BenchmarkPartitionedSetParallel64(b *testing.B) {
	nodes := startPartitionCluster(b)
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	w := startPartitioned(b, nodes[0], Partitioning{Count: testPartitions, Static: all}, "", hooks{})
	nc := connectNode(b, nodes[0])
	var subj []string
	for i := range 8 {
		subj = append(subj, subjects.APISubject(subjects.DefaultPrefix, subjects.OpSet, fmt.Sprintf("b%d.s", i)))
	}
	header := w.self.header
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("header=%v", on), func(b *testing.B) {
			w.self.header = nil
			if on {
				w.self.header = header
			}
			payload := []byte("0123456789abcdef")
			runRequesters(b, func(i int) error {
				m, err := nc.Request(subj[i%len(subj)], payload, 10*time.Second)
				if err != nil {
					return err
				}
				if we := replyError(m); we != nil {
					return we
				}
				if got := m.Header.Get(subjects.HeaderWorker) != ""; got != on {
					return fmt.Errorf("reply header %v, want Persist-Worker %v", m.Header, on)
				}
				return nil
			})
		})
	}
	w.self.header = header
}

// BenchmarkAnswerWritesPartitioned is BenchmarkAnswerWrites on a
// partitioned worker: every reply carries Persist-Worker.
func BenchmarkAnswerWritesPartitioned(b *testing.B) {
	f := newFixture(b, Options{})
	// The partitions need not be served: only the replies' header is
	// measured.
	f.b.parts = &partitions{count: testPartitions}
	f.b.setSelf(f.b.Service().Info().ID)
	var batch []*job
	var res []store.WriteResult
	for i := range 25 {
		batch = append(batch, &job{op: subjects.OpSet, reply: "bench.reply", items: []item{{}}})
		res = append(res, store.WriteResult{Seq: uint64(i + 1), Time: 1764100000000})
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, j := range batch {
			j.answered = false
		}
		f.b.answerWrites("bench.w", batch, res)
	}
}
