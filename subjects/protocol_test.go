package subjects

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"testing"
)

// TestProtocol_CopyIsCurrent checks that the repository's PROTOCOL.md is
// the contract: identical to ../shared/PROTOCOL.md where that copy is
// present beside the checkout, and a Persist protocol text in any case.
func TestProtocol_CopyIsCurrent(t *testing.T) {
	ours, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatalf("the repository's PROTOCOL.md: %v", err)
	}
	if !bytes.HasPrefix(ours, []byte("# Persist wire protocol")) {
		t.Fatalf("PROTOCOL.md does not start with the protocol's title: %.40q", ours)
	}
	shared, err := os.ReadFile("../../shared/PROTOCOL.md")
	if errors.Is(err, fs.ErrNotExist) {
		return // a clone on its own: nothing to compare with
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, shared) {
		t.Fatal("PROTOCOL.md differs from ../shared/PROTOCOL.md, the current contract: copy it over")
	}
}
