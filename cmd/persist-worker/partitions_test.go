package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-persist/persist/broker"
)

func TestParseConfig_Partitions(t *testing.T) {
	cfg, err := parseConfig(nil, env{}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Partitions.options; got.Count != 0 || got.Static != nil {
		t.Errorf("default partitioning = %+v, want off", got)
	}

	cfg, err = parseConfig([]string{"--partitions", "0-2,5"}, env{}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Partitions.options; got.Count != 8 || !slices.Equal(got.Static, []int{0, 1, 2, 5}) {
		t.Errorf("--partitions 0-2,5 = %+v, want static 0,1,2,5 of 8", got)
	}

	cfg, err = parseConfig(nil, env{"PERSIST_PARTITIONS": "auto", "PERSIST_PARTITION_COUNT": "16",
		"PERSIST_LEASE_TTL": "9s", "PERSIST_LEASE_REPLICAS": "3", "PERSIST_LEASE_BUCKET": "b"}.lookup)
	if err != nil {
		t.Fatal(err)
	}
	want := broker.Partitioning{Count: 16, Bucket: "b", LeaseTTL: 9 * time.Second, Replicas: 3}
	if got := cfg.Partitions.options; got.Count != want.Count || got.Static != nil || got.Bucket != want.Bucket ||
		got.LeaseTTL != want.LeaseTTL || got.Replicas != want.Replicas {
		t.Errorf("PERSIST_PARTITIONS=auto … = %+v, want %+v", got, want)
	}

	cfg, err = parseConfig(nil, env{"PERSIST_PARTITIONS": "auto", "PERSIST_SHARED_DATA_DIR": "true"}.lookup)
	if err != nil || !cfg.Partitions.SharedDataDir {
		t.Errorf("PERSIST_SHARED_DATA_DIR=true: shared %v, %v; want true", cfg.Partitions.SharedDataDir, err)
	}
	for _, bad := range [][]string{{"--shared-data-dir"}, {"--shared-data-dir", "--partitions", "0-3"}} {
		_, err := parseConfig(bad, env{}.lookup)
		if err == nil || !strings.Contains(err.Error(), "--shared-data-dir needs --partitions auto") {
			t.Errorf("%v: error %v, want the usage error of --shared-data-dir", bad, err)
		}
	}

	for _, bad := range [][]string{
		{"--partitions", "0-8"},
		{"--partitions", "3,3"},
		{"--partitions", "x"},
		{"--partitions", "0", "--partition-count", "0"},
		{"--partitions", "0", "--partition-count", "2000"},
		{"--partitions", "auto", "--lease-ttl", "0s"},
		{"--partitions", "auto", "--lease-ttl", "500ms"},
		{"--partitions", "auto", "--lease-replicas", "0"},
	} {
		_, err := parseConfig(bad, env{}.lookup)
		if err == nil || !strings.Contains(err.Error(), "invalid --") {
			t.Errorf("%v: error %v, want a usage error naming the flag", bad, err)
		}
	}
}
