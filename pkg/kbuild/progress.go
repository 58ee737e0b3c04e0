package kbuild

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// progress is the io.Writer make's output goes to: it keeps the whole log,
// counts Kbuild's "  CC  file.o" style steps, and reports them as a live line
// on a terminal or as a log line every 30 s otherwise.
type progress struct {
	mu       sync.Mutex
	log      *slog.Logger
	term     io.Writer
	label    string
	expect   int
	sink     io.Writer
	partial  []byte
	steps    int
	start    time.Time
	lastShow time.Time
	every    time.Duration
}

func newProgress(log *slog.Logger, term io.Writer, label string, expect int, sink io.Writer) *progress {
	every := 30 * time.Second
	if term != nil {
		every = 200 * time.Millisecond
	}
	return &progress{log: log, term: term, label: label, expect: expect, sink: sink, start: time.Now(), lastShow: time.Now(), every: every}
}

func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.sink.Write(b); err != nil {
		return 0, err
	}
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		if isStep(p.partial[:i]) {
			p.steps++
		}
		p.partial = p.partial[i+1:]
	}
	if time.Since(p.lastShow) >= p.every {
		p.show()
	}
	return len(b), nil
}

// isStep recognises Kbuild's quiet command lines: two spaces, an upper-case
// tag (CC, LD, AR, AS, GEN, ...), spaces, a target.
func isStep(line []byte) bool {
	if len(line) < 4 || line[0] != ' ' || line[1] != ' ' {
		return false
	}
	i := 2
	for i < len(line) && (line[i] >= 'A' && line[i] <= 'Z' || line[i] >= '0' && line[i] <= '9' || line[i] == '_' || line[i] == '-') {
		i++
	}
	return i > 2 && i < len(line) && line[i] == ' '
}

// status is "done/total steps (pct), elapsed, about N left" when a
// previous full build of the same arch and role gave the total, else
// "N steps, elapsed".
func (p *progress) status() string {
	el := time.Since(p.start)
	if p.expect <= 0 {
		return fmt.Sprintf("%d steps, %s", p.steps, el.Round(time.Second))
	}
	pct := 100 * p.steps / p.expect
	if pct > 99 {
		pct = 99
	}
	s := fmt.Sprintf("%d/%d steps (%d%%), %s", p.steps, p.expect, pct, el.Round(time.Second))
	if p.steps > 0 && p.steps < p.expect {
		left := time.Duration(float64(el) / float64(p.steps) * float64(p.expect-p.steps))
		s += fmt.Sprintf(", about %s left", left.Round(time.Second))
	}
	return s
}

func (p *progress) show() {
	p.lastShow = time.Now()
	if p.term != nil {
		fmt.Fprintf(p.term, "\r\033[K[%s] %s", p.label, p.status())
		return
	}
	p.log.Info(p.label, "progress", p.status())
}

// Close ends the live line.
func (p *progress) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.term != nil {
		fmt.Fprintf(p.term, "\r\033[K[%s] %d steps in %s\n", p.label, p.steps, time.Since(p.start).Round(time.Second))
	}
}

// Steps is the number of build steps seen.
func (p *progress) Steps() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.steps
}
