package main

import (
	"errors"
	"fmt"
	"testing"
)

// TestFail_NamesTheVerbOnce checks that an error the client already
// prefixed with the verb's name does not name it twice.
func TestFail_NamesTheVerbOnce(t *testing.T) {
	c := &cli{}
	cause := errors.New(`nats: permissions violation: Permissions Violation for Publish to "$SRV.STATS.persist"`)
	for _, tc := range []struct {
		what string
		err  error
		want string
	}{
		{"workers", fmt.Errorf("client: workers: %w", cause), "workers: " + cause.Error()},
		{"get acme", fmt.Errorf("client: bad reply: %w", cause), "get acme: bad reply: " + cause.Error()},
	} {
		err := c.fail(tc.what, tc.err)
		if err == nil || err.Error() != tc.want {
			t.Errorf("fail(%q, %v) = %v, want %q", tc.what, tc.err, err, tc.want)
		}
		if !errors.Is(err, cause) {
			t.Errorf("fail(%q, …) = %v does not wrap the cause", tc.what, err)
		}
	}
}
