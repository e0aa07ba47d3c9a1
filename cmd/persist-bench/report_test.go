package main

import "testing"

func TestTarget_Check(t *testing.T) {
	tests := []struct {
		name       string
		t          target
		v          float64
		errs       uint64
		text, want string
	}{
		{"MustMet", target{must: 0.8, aim: 1.0}, 0.9, 0, "≥ 0.8 (aim 1)", "yes (aim: no)"},
		{"AimMet", target{must: 0.8, aim: 1.0}, 1.2, 0, "≥ 0.8 (aim 1)", "yes (aim: yes)"},
		{"Missed", target{must: 0.6}, 0.55, 0, "≥ 0.6", "no"},
		{"Below", target{must: 0.25, below: true}, 0.25, 0, "≤ 0.25", "yes"},
		{"BelowMissed", target{must: 0.25, below: true}, 1.7, 0, "≤ 0.25", "no"},
		{"OnValue", target{must: 50, below: true, onValue: true}, 49, 0, "< 50 ms", "yes"},
		{"OnValueEqual", target{must: 50, below: true, onValue: true}, 50, 0, "< 50 ms", "no"},
		{"ZeroErrors", target{must: 10, zeroErrors: true}, 12, 3, "≥ 10, 0 errors", "no"},
		{"ZeroErrorsMet", target{must: 10, zeroErrors: true}, 12, 0, "≥ 10, 0 errors", "yes"},
		{"AimOnly", target{aim: 1}, 0.05, 0, "aim ≥ 1", "aim: no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.t.text("ms"); got != tt.text {
				t.Errorf("text() = %q, want %q", got, tt.text)
			}
			if got := tt.t.check(tt.v, tt.errs); got != tt.want {
				t.Errorf("check(%v, %d) = %q, want %q", tt.v, tt.errs, got, tt.want)
			}
		})
	}
}

func TestSide_Finish(t *testing.T) {
	s := &side{}
	for _, v := range []float64{3, 1, 2, 10} {
		s.add(v, result{})
	}
	s.finish()
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 {
		t.Errorf("median, min, max = %v, %v, %v, want 2.5, 1, 10", s.Median, s.Min, s.Max)
	}
	s.add(4, result{errors: 2})
	s.finish()
	if s.Median != 3 || s.Errors != 2 {
		t.Errorf("median, errors = %v, %d, want 3, 2", s.Median, s.Errors)
	}
}

func TestFmtValue(t *testing.T) {
	tests := []struct {
		v          float64
		unit, want string
	}{
		{65012, "req/s", "65.0k"},
		{284000, "msg/s", "284k"},
		{434, "streams/s", "434"},
		{1155.4, "MB", "1155"},
		{0.0112, "s", "0.011"},
		{40.93, "s", "40.9"},
		{3.084, "ms", "3.08"},
	}
	for _, tt := range tests {
		if got := fmtValue(tt.v, tt.unit); got != tt.want {
			t.Errorf("fmtValue(%v, %s) = %q, want %q", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"--worker-arg", "--max-open=10", "--data", "/a b", "--scenarios", "it's"})
	want := `persist-bench --worker-arg --max-open=10 --data '/a b' --scenarios 'it'\''s'`
	if got != want {
		t.Errorf("commandLine() = %q, want %q", got, want)
	}
}
