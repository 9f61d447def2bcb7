package importer

import (
	"fmt"
	"io"
	"strings"
)

// progress shows how far each step is: a bar redrawn in place on a terminal, one line per step
// otherwise (so logs of a pipeline stay readable).
type progress struct {
	w        io.Writer
	terminal bool
	kind     string
	drawn    bool
}

const barWidth = 30

func (p *progress) update(kind string, done, total int) {
	if p.w == nil || total == 0 {
		return
	}
	if !p.terminal {
		if done == total {
			_, _ = fmt.Fprintf(p.w, "%s: %d/%d\n", kind, done, total)
		}
		return
	}
	if kind != p.kind && p.drawn {
		_, _ = fmt.Fprintln(p.w)
	}
	p.kind, p.drawn = kind, true
	filled := barWidth * done / total
	_, _ = fmt.Fprintf(p.w, "\r%-16s [%s%s] %d/%d", kind, strings.Repeat("=", filled), strings.Repeat(" ", barWidth-filled), done, total)
}

// done ends the bar's line.
func (p *progress) done() {
	if p.terminal && p.drawn {
		_, _ = fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// fail ends the bar's line before an error is printed, and returns err.
func (p *progress) fail(err error) error {
	p.done()
	return err
}
