package configdiff

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/repo"
)

// Change says how a config, a field or a line changed.
type Change string

// The kinds of change.
const (
	Added   Change = "added"
	Removed Change = "removed"
	Changed Change = "changed"
)

// Config is one config that differs.
type Config struct {
	Name   string  `json:"name"`           // e.g. "feed/cache_job", or a raw config's "service/banner.txt"
	Path   string  `json:"path"`           // materialized path
	Type   string  `json:"type,omitempty"` // the exported Thrift type, when known
	Change Change  `json:"change"`
	Fields []Field `json:"fields,omitempty"` // of a changed config: fields, or lines of a raw config
	Binary bool    `json:"binary,omitempty"` // a raw config that is not text: no Fields
}

// Field is one difference inside a changed config: a field or element of a
// compiled config's value (Path), or a line of a raw config (Line).
type Field struct {
	Path   string          `json:"path,omitempty"` // e.g. "resources.memory_mb", "tags[2]"; "" for the whole value
	Line   int             `json:"line,omitempty"` // 1-based line of a raw config: in the new text, or in the old for a removed line
	Change Change          `json:"change"`
	Old    json.RawMessage `json:"old,omitempty"` // compact JSON; a line is a JSON string
	New    json.RawMessage `json:"new,omitempty"`
}

// String formats f for a reviewer: `resources.memory_mb: 2048 -> 4096`,
// `tags[2]: added "x"`, `line 3: removed "text"`.
func (f Field) String() string {
	where := f.Path
	switch {
	case f.Line > 0:
		where = "line " + strconv.Itoa(f.Line)
	case where == "":
		where = "value"
	}
	switch f.Change {
	case Added:
		return fmt.Sprintf("%s: added %s", where, f.New)
	case Removed:
		return fmt.Sprintf("%s: removed %s", where, f.Old)
	}
	return fmt.Sprintf("%s: %s -> %s", where, f.Old, f.New)
}

// Report is the outcome of Run.
type Report struct {
	Compiled int       // configs and raw configs compiled
	Configs  []Config  // the configs that differ, sorted by name; nil when Diags is not empty
	Diags    diag.List // compile errors and validator failures, sorted
}

// Run compiles every config and raw config of the repository at root in
// memory (writing nothing) and compares the results with the materialized
// configs in old, an fs.FS rooted at a config repository root such as a git
// revision (nil: an empty repository). When a config fails to compile, the
// report holds the diagnostics and no comparison. The error is for I/O
// problems.
func Run(ctx context.Context, root string, old fs.FS, opts compiler.Options) (*Report, error) {
	rp, err := repo.Open(root)
	if err != nil {
		return nil, err
	}
	defer rp.Close()
	fsys := rp.FS()
	tree, err := repo.Scan(fsys)
	if err != nil {
		return nil, err
	}
	outs := compiler.New(fsys, opts).CompileAll(ctx, tree.Sources())
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &Report{Compiled: len(outs)}
	for _, o := range outs {
		r.Diags = append(r.Diags, o.Diags...)
	}
	if len(r.Diags) > 0 {
		r.Diags.Sort()
		return r, nil
	}
	r.Configs, err = Compare(old, outs)
	return r, err
}

// Compare compares compiled outputs with the materialized configs in old (an
// fs.FS rooted at a config repository root; nil is empty). A materialized
// file in old that no output produces is a removed config (configs in Thrift
// encodings are left out: they change with their JSON); outputs with
// diagnostics are skipped. A config whose value is unchanged is not
// reported even if its bytes differ (a hand-edited layout, say). The result
// is sorted by name.
func Compare(old fs.FS, outs []*compiler.Output) ([]Config, error) {
	var out []Config
	produced := map[string]bool{}
	for _, o := range outs {
		if len(o.Diags) > 0 {
			continue
		}
		produced[o.Path] = true
		c := Config{Name: o.Name, Path: o.Path, Type: o.Type}
		prev, err := readOld(old, o.Path)
		if err != nil {
			return nil, err
		}
		if prev == nil {
			c.Change = Added
			out = append(out, c)
			continue
		}
		if bytes.Equal(prev, o.Data) {
			continue
		}
		c.Change = Changed
		switch {
		case repo.Classify(o.Source) == repo.Config:
			fields, err := Values(prev, o.Data)
			if err != nil {
				// The old file is not JSON (edited by hand): compare text.
				fields = Lines(prev, o.Data)
			}
			c.Fields = fields
		case !isText(prev) || !isText(o.Data):
			c.Binary = true
		default:
			c.Fields = Lines(prev, o.Data)
		}
		if len(c.Fields) == 0 && !c.Binary {
			continue
		}
		out = append(out, c)
	}
	if old != nil {
		have, err := repo.ListMaterialized(old)
		if err != nil {
			return nil, fmt.Errorf("listing old %s: %w", repo.MaterializedDir, err)
		}
		for _, p := range have {
			if !produced[p] && !isEncoding(old, p) {
				out = append(out, Config{Name: removedName(old, p), Path: p, Change: Removed})
			}
		}
	}
	slices.SortFunc(out, func(a, b Config) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out, nil
}

// isEncoding reports whether the materialized file p in old is a config in
// another encoding than JSON (see compiler.Options.Emit), rather than a raw
// config: its changes are those of the JSON beside it.
func isEncoding(old fs.FS, p string) bool {
	switch strings.TrimPrefix(path.Ext(p), ".") {
	case compiler.EncodingThriftBinary, compiler.EncodingThriftCompact:
		_, err := fs.Stat(old, repo.SourceDir+"/"+strings.TrimPrefix(p, repo.MaterializedDir+"/"))
		return err != nil
	}
	return false
}

// readOld returns the file at p in old, nil if there is none.
func readOld(old fs.FS, p string) ([]byte, error) {
	if old == nil {
		return nil, nil
	}
	data, err := fs.ReadFile(old, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading old %s: %w", p, err)
	}
	if data == nil {
		data = []byte{}
	}
	return data, nil
}

// removedName returns the config name of the materialized file p in old:
// "materialized_configs/a/b.json" is the config "a/b" if old has
// source/a/b.cconf or no source/a/b.json, and the raw config "a/b.json"
// otherwise.
func removedName(old fs.FS, p string) string {
	name := strings.TrimPrefix(p, repo.MaterializedDir+"/")
	base, isJSON := strings.CutSuffix(name, ".json")
	if !isJSON {
		return name
	}
	if _, err := fs.Stat(old, repo.SourceDir+"/"+base+".cconf"); err == nil {
		return base
	}
	if _, err := fs.Stat(old, repo.SourceDir+"/"+name); err == nil {
		return name
	}
	return base
}

func isText(b []byte) bool { return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 }

// WriteText writes configs for a reviewer: a line per config, "~ name"
// (changed), "+ name" (added) or "- name" (removed), and below a changed one
// a line per field or text line, indented by two spaces.
func WriteText(w io.Writer, configs []Config) error {
	var b bytes.Buffer
	for _, c := range configs {
		mark := map[Change]string{Added: "+", Removed: "-", Changed: "~"}[c.Change]
		fmt.Fprintf(&b, "%s %s\n", mark, c.Name)
		if c.Binary {
			b.WriteString("  binary content changed\n")
		}
		for _, f := range c.Fields {
			fmt.Fprintf(&b, "  %s\n", f)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}
