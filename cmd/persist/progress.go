package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress draws a one-line progress bar on standard error. A nil
// *progress draws nothing, so callers need not check.
type progress struct {
	w     io.Writer
	label string
	unit  string // what total counts: "messages" or "bytes"
	total int64  // 0 when unknown
	done  int64
	now   func() time.Time
	drawn time.Time
}

// drawEvery bounds how often the bar is redrawn.
const drawEvery = 100 * time.Millisecond

func (c *cli) newProgress(label string, total int64, unit string) *progress {
	p := &progress{w: c.stderr, label: label, unit: unit, total: total, now: c.now}
	p.draw()
	return p
}

// set records how far the work is and redraws now and then.
func (p *progress) set(done int64) {
	if p == nil {
		return
	}
	p.done = done
	if t := p.now(); t.Sub(p.drawn) >= drawEvery {
		p.drawn = t
		p.draw()
	}
}

// stop draws the final state and ends the line.
func (p *progress) stop() {
	if p == nil || p.w == nil {
		return
	}
	p.draw()
	fmt.Fprintln(p.w)
	p.w = nil
}

func (p *progress) draw() {
	if p.w == nil {
		return
	}
	done, total := fmt.Sprint(p.done), fmt.Sprint(p.total)
	if p.unit == "bytes" {
		done, total = formatSize(p.done), formatSize(p.total)
	}
	if p.total <= 0 {
		if p.unit == "bytes" {
			fmt.Fprintf(p.w, "\r%s %s", p.label, done)
		} else {
			fmt.Fprintf(p.w, "\r%s %s %s", p.label, done, p.unit)
		}
		return
	}
	const width = 30
	frac := min(float64(p.done)/float64(p.total), 1)
	full := int(frac * width)
	of := done + " of " + total
	if p.unit != "bytes" {
		of += " " + p.unit
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %s", p.label, strings.Repeat("=", full), strings.Repeat(" ", width-full), frac*100, of)
}
