package validate

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/cfg-dev/cfg/diag"
)

// Formats accepted by Write.
const (
	FormatText   = "text"
	FormatJSON   = "json"
	FormatGitHub = "github"
)

// Relativize rewrites every path in diags with rel (for example, from
// repository-relative to working-directory-relative).
func Relativize(diags diag.List, rel func(string) string) {
	fix := func(p *diag.Pos) {
		if p.File != "" {
			p.File = rel(p.File)
		}
	}
	for _, d := range diags {
		fix(&d.Pos)
		for i := range d.Notes {
			fix(&d.Notes[i].Pos)
		}
		for i := range d.Stack {
			fix(&d.Stack[i].Pos)
		}
	}
}

// Write writes diags in the given format. Text puts one diagnostic per line
// with its notes and call stack indented below it (color highlights the
// position); JSON writes {"diagnostics": [...]} plus the extra fields;
// GitHub writes workflow commands that annotate the files of a pull request.
func Write(w io.Writer, format string, diags diag.List, color bool, extra map[string]any) error {
	switch format {
	case FormatJSON:
		out := map[string]any{"diagnostics": diags}
		if diags == nil {
			out["diagnostics"] = []*diag.Diagnostic{}
		}
		for k, v := range extra {
			out[k] = v
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(out)
	case FormatGitHub:
		for _, d := range diags {
			props := []string{"file=" + escapeProperty(d.Pos.File)}
			if d.Pos.Line > 0 {
				props = append(props, fmt.Sprintf("line=%d", d.Pos.Line))
			}
			if d.Pos.Col > 0 {
				props = append(props, fmt.Sprintf("col=%d", d.Pos.Col))
			}
			msg := d.Msg
			for _, n := range d.Notes {
				msg += "\n" + n.Pos.String() + ": " + n.Msg
			}
			if _, err := fmt.Fprintf(w, "::error %s::%s\n", strings.Join(props, ","), escapeData(msg)); err != nil {
				return err
			}
		}
		return nil
	case FormatText, "":
		for _, d := range diags {
			s := d.Long()
			if color {
				s = "\x1b[1m" + d.Pos.String() + ":\x1b[0m \x1b[31m" + d.Msg + "\x1b[0m" + strings.TrimPrefix(s, d.Error())
			}
			if _, err := fmt.Fprintln(w, s); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown format %q (want text, json or github)", format)
}

// GitHub workflow command escaping.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}
