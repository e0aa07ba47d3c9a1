package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestReport_AppendsJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.jsonl")
	t.Setenv("PERSIST_REPORT", path)
	report(t, "sample", map[string]any{"kills": 3, "lost": 0})
	report(t, "sample", map[string]any{"kills": 4})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(l, &rec); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines = append(lines, rec)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	fig := lines[0]["figures"].(map[string]any)
	if lines[0]["report"] != "sample" || fig["kills"] != 3.0 || fig["lost"] != 0.0 {
		t.Fatalf("first line = %v", lines[0])
	}
}
