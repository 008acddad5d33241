package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration, located by file, line and
// YAML path (for example routes[0].parquet.destination).
type Problem struct {
	File string
	Line int
	Path string
	Msg  string
}

// String formats the problem as FILE:LINE: PATH: MESSAGE, leaving out the parts
// that are unknown (a line of 0, an empty path).
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is the error returned when a configuration does not load: every
// problem found, sorted by line, so that one run of `sinkd validate` shows them all.
type Problems struct {
	List []Problem
}

// NewProblems returns nil when list is empty and a *Problems sorted by line
// otherwise. Later stages (template compilation, say) collect Problems made with
// Config.Problem and return them through this.
func NewProblems(list ...Problem) error {
	if len(list) == 0 {
		return nil
	}
	sorted := slices.Clone(list)
	slices.SortStableFunc(sorted, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	return &Problems{List: sorted}
}

func (p *Problems) Error() string {
	lines := make([]string, len(p.List))
	for i, pr := range p.List {
		lines[i] = pr.String()
	}
	return strings.Join(lines, "\n")
}

// problemf is the short form used while loading.
func problemf(file string, line int, path, format string, args ...any) Problem {
	return Problem{File: file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
}
