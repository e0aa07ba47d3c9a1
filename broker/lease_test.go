package broker

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestFairShare runs rounds of fairShare for workers that hold, give up
// and claim partitions as balance does, and checks that they end evenly
// spread (count/N or one more each) having moved no more partitions than
// an even spread needs.
func TestFairShare(t *testing.T) {
	cases := []struct {
		count int
		start []int // partitions held by each worker at first; the last ones may join with 0
	}{
		{8, []int{0, 0, 0}},
		{8, []int{3, 3, 2, 0}},
		{8, []int{2, 2, 2, 2, 0}},
		{8, []int{8, 0, 0, 0, 0, 0, 0, 0}},
		{8, []int{4, 4, 0, 0, 0, 0}},
		{8, []int{2, 2, 2, 1, 1, 0, 0, 0, 0}},
		{16, []int{6, 5, 5, 0, 0}},
		{1, []int{1, 0, 0}},
		{7, []int{7}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.count, tc.start), func(t *testing.T) {
			n := len(tc.start)
			held := make([][]int, n)
			next := 0
			for w, k := range tc.start {
				for range k {
					held[w] = append(held[w], next)
					next++
				}
			}
			free := []int{}
			for p := next; p < tc.count; p++ {
				free = append(free, p)
			}
			for round := 0; round < 50; round++ {
				// Every worker's round sees the others as the bucket
				// shows them after the previous worker's round.
				for w := range n {
					counts := map[string]int{}
					for o := range n {
						counts[id(o)] = len(held[o])
					}
					keep, upTo := fairShare(tc.count, len(free), id(w), counts)
					if keep > upTo {
						t.Fatalf("round %d worker %d: keep %d beyond upTo %d", round, w, keep, upTo)
					}
					if len(held[w]) > keep {
						slices.Sort(held[w])
						free = append(free, held[w][keep:]...)
						held[w] = held[w][:keep]
						continue
					}
					for len(held[w]) < upTo && len(free) > 0 {
						held[w] = append(held[w], free[0])
						free = free[1:]
					}
				}
			}
			lo, hi := tc.count/n, (tc.count+n-1)/n
			spread := map[int]int{}
			for w := range n {
				if k := len(held[w]); k < lo || k > hi {
					t.Fatalf("worker %d holds %d, not %d or %d: %v", w, k, lo, hi, held)
				}
				spread[len(held[w])]++
			}
			if len(free) > 0 {
				t.Fatalf("partitions %v served by nobody: %v", free, held)
			}
			// The least moves to an even spread: the partitions free at
			// first, plus what the workers above count/N+1 must give up
			// or the workers below count/N must get beyond those.
			over, under := 0, 0
			for _, k := range tc.start {
				over += max(k-hi, 0)
				under += max(lo-k, 0)
			}
			free0 := tc.count - next
			least := free0 + max(over, under-free0)
			moved := 0
			for w := range n {
				for _, p := range held[w] {
					if p >= next || owner(tc.start, p) != w {
						moved++
					}
				}
			}
			if moved > least {
				t.Fatalf("%d partitions moved to spread %v, not the least, %d: %v", moved, tc.start, least, held)
			}
			t.Logf("%v -> %v (%d moved)", tc.start, slices.Sorted(maps.Keys(spread)), moved)
		})
	}
}

func id(w int) string { return fmt.Sprintf("w%02d", w) }

// owner is the worker that holds partition p at first, as TestFairShare
// hands them out: in order, start[0] to the first worker, and so on.
func owner(start []int, p int) int {
	for w, k := range start {
		if p < k {
			return w
		}
		p -= k
	}
	return -1
}

// TestTaken checks which claim errors mean that another worker holds the
// lease: they are not logged as failures.
func TestTaken(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{jetstream.ErrKeyExists, true},
		{fmt.Errorf("claim: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence"}), true},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: jetstream.JSErrCodeJetStreamNotEnabled}, false},
		{context.DeadlineExceeded, false},
		{nats.ErrNoResponders, false},
	} {
		if got := taken(tc.err); got != tc.want {
			t.Errorf("taken(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
