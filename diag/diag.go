// Package diag defines the positioned diagnostics that every stage of cfg
// reports: a source position, a message, optional notes pointing at related
// positions, and the Starlark call stack when one exists.
//
// Diagnostics print as "file:line:col: message", the form editors and CI
// systems understand. A List sorts by position so output is stable whatever
// order the work finished in.
package diag

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Pos is a position in a file of the config repository. File is a path
// relative to the repository root with forward slashes; Line and Col are
// 1-based, and zero when unknown.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line,omitempty"`
	Col  int    `json:"col,omitempty"`
}

// String formats p as "file:line:col", leaving out what is unknown.
func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Compare orders positions by file, line and column.
func (p Pos) Compare(q Pos) int {
	return cmp.Or(strings.Compare(p.File, q.File), cmp.Compare(p.Line, q.Line), cmp.Compare(p.Col, q.Col))
}

// Note is a secondary position attached to a diagnostic, such as the
// declaration of the field a value was checked against.
type Note struct {
	Pos Pos    `json:"pos"`
	Msg string `json:"message"`
}

// Frame is one entry of a Starlark call stack, innermost last.
type Frame struct {
	Pos  Pos    `json:"pos"`
	Func string `json:"function"`
}

// Diagnostic is a problem found in the input.
type Diagnostic struct {
	Pos    Pos     `json:"pos"`
	Msg    string  `json:"message"`
	Config string  `json:"config,omitempty"` // the config being compiled, if any
	Notes  []Note  `json:"notes,omitempty"`
	Stack  []Frame `json:"stack,omitempty"`
}

// Error formats d as "file:line:col: message".
func (d *Diagnostic) Error() string { return d.Pos.String() + ": " + d.Msg }

// Long formats d with its notes and call stack, one per indented line.
func (d *Diagnostic) Long() string {
	var b strings.Builder
	b.WriteString(d.Error())
	for _, n := range d.Notes {
		fmt.Fprintf(&b, "\n    %s: %s", n.Pos, n.Msg)
	}
	if len(d.Stack) > 1 {
		b.WriteString("\n    call stack:")
		for _, f := range d.Stack {
			fmt.Fprintf(&b, "\n      %s: in %s", f.Pos, f.Func)
		}
	}
	return b.String()
}

// Errorf returns a diagnostic at pos.
func Errorf(pos Pos, format string, args ...any) *Diagnostic {
	return &Diagnostic{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// List is a list of diagnostics. Its Error method lets a non-empty list be
// returned as an error.
type List []*Diagnostic

// Sort orders the list by position, then message, and drops exact duplicates
// (the same problem reached through two configs sharing a module).
func (l *List) Sort() {
	slices.SortStableFunc(*l, func(a, b *Diagnostic) int {
		return cmp.Or(a.Pos.Compare(b.Pos), strings.Compare(a.Msg, b.Msg))
	})
	*l = slices.CompactFunc(*l, func(a, b *Diagnostic) bool {
		return a.Pos == b.Pos && a.Msg == b.Msg
	})
}

// Error formats the list, one diagnostic per line.
func (l List) Error() string {
	s := make([]string, len(l))
	for i, d := range l {
		s[i] = d.Error()
	}
	return strings.Join(s, "\n")
}

// Err returns l as an error, or nil when it is empty.
func (l List) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// CheckNUL reports the first NUL byte of a source file, which no source
// file may hold (Starlark's scanner would take it for the end of the
// file), at its position: columns count UTF-8 characters from 1.
func CheckNUL(file string, src []byte) *Diagnostic {
	if i := bytes.IndexByte(src, 0); i >= 0 {
		return Errorf(byteAt(file, src, i), "got a NUL byte, want text (source files hold no NUL bytes)")
	}
	return nil
}

// CheckText reports a NUL byte (see CheckNUL) or the first byte that is not
// UTF-8 in a Starlark source file, which is UTF-8 text: a string literal
// holding such a byte would otherwise silently hold U+FFFD instead.
func CheckText(file string, src []byte) *Diagnostic {
	if d := CheckNUL(file, src); d != nil {
		return d
	}
	if utf8.Valid(src) {
		return nil
	}
	for i := 0; ; {
		r, size := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && size <= 1 {
			return Errorf(byteAt(file, src, i), "got byte 0x%02x, want UTF-8 text", src[i])
		}
		i += size
	}
}

// byteAt returns the position of src[i].
func byteAt(file string, src []byte, i int) Pos {
	start := bytes.LastIndexByte(src[:i], '\n') + 1
	line := bytes.Count(src[:start], []byte{'\n'}) + 1
	return Pos{File: file, Line: line, Col: utf8.RuneCount(src[start:i]) + 1}
}
