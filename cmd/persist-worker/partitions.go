package main

import (
	"flag"
	"time"

	"github.com/nats-persist/persist/broker"
	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

// partitionFlags are the flags of partitioned serving (several workers on
// one prefix, each serving some of its partitions).
type partitionFlags struct {
	Partitions    string
	Count         int
	LeaseBucket   string
	LeaseTTL      time.Duration
	LeaseReplicas int
	SharedDataDir bool

	options broker.Partitioning // filled in by validate
}

// addPartitionFlags binds the partition flags to p, which holds the
// defaults.
func addPartitionFlags(fs *flag.FlagSet, p *partitionFlags) {
	fs.StringVar(&p.Partitions, "partitions", "", "serve only these `partitions` of --prefix, such as 0-3 or 0,4-5, or claim a fair share through leases with auto; the NATS servers must map the requests to partitions (testdata/cluster). Empty: not partitioned, the one worker of the prefix")
	fs.IntVar(&p.Count, "partition-count", 8, "`number` of partitions: the one of the servers' mappings (partition(<number>,2))")
	fs.StringVar(&p.LeaseBucket, "lease-bucket", "", "JetStream key/value `bucket` of the leases of --partitions auto, created if missing; empty: <prefix>-leases with dots as underscores")
	fs.DurationVar(&p.LeaseTTL, "lease-ttl", broker.DefaultLeaseTTL, "lifetime of an unrenewed lease (--partitions auto), renewed every third of it: a worker that dies leaves its partitions after at most about this")
	fs.IntVar(&p.LeaseReplicas, "lease-replicas", 1, "replicas of the lease bucket when it is created; 3 on a cluster of three or more")
	fs.BoolVar(&p.SharedDataDir, "shared-data-dir", false, "with --partitions auto: --data is on storage every worker shares, with working POSIX locks (NFSv4, CephFS; not NFSv3 without lockd); it is not locked, and a partition's new owner opens the files the old one wrote, so a worker that dies loses no acknowledged write")
}

// validate checks the partition flags and fills in options.
func (p *partitionFlags) validate() error {
	if p.SharedDataDir && p.Partitions != "auto" {
		return command.Usagef("--shared-data-dir needs --partitions auto: workers that do not claim their partitions through leases would serve the same streams")
	}
	if p.Partitions == "" {
		return nil
	}
	if err := subjects.ValidatePartitions(p.Count); err != nil {
		return command.Usagef("invalid --partition-count %d: %v", p.Count, err)
	}
	p.options = broker.Partitioning{Count: p.Count, Bucket: p.LeaseBucket, LeaseTTL: p.LeaseTTL, Replicas: p.LeaseReplicas}
	if p.Partitions == "auto" {
		switch {
		case p.LeaseTTL < time.Second:
			// Renewed every third, each write given a sixth: shorter
			// than that, a busy server would cost partitions.
			return command.Usagef("invalid --lease-ttl %v: at least 1s", p.LeaseTTL)
		case p.LeaseReplicas < 1 || p.LeaseReplicas > 5:
			return command.Usagef("invalid --lease-replicas %d: 1 to 5", p.LeaseReplicas)
		}
		return nil
	}
	parts, err := subjects.ParsePartitions(p.Partitions, p.Count)
	if err != nil {
		return command.Usagef("invalid --partitions %q: %v", p.Partitions, err)
	}
	p.options.Static = parts
	return nil
}
