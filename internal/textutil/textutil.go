// Package textutil holds the small text helpers the stages share.
package textutil

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// FirstLine is s up to its first newline.
func FirstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// Tail is the last n lines of s, each indented by two spaces ("" for an
// empty s).
func Tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Progress is where a long run's progress lines go: live to terminal when
// stdout is one, else as log lines, each prefixed with name and its
// spacing collapsed (lab:storm, lab:load).
func Progress(terminal io.Writer, log *slog.Logger, name string) func(string) {
	if terminal != nil {
		return func(line string) { fmt.Fprintln(terminal, line) }
	}
	return func(line string) { log.Info(name + ": " + strings.Join(strings.Fields(line), " ")) }
}
