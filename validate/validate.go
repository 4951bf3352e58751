// Package validate is the CI gate: it compiles every config in memory (type
// checks and validators included) and reports drift between what the
// sources compile to and the materialized configs committed beside them. It
// writes nothing.
//
// Drift comes in five kinds:
//
//   - missing: a config or raw config has no materialized file (or none in
//     an encoding the repository publishes);
//   - stale: the materialized file differs from what its source compiles to;
//   - hand-edited: the materialized file was changed by hand: it is not in
//     canonical form, or it differs while the copy in the git HEAD commit
//     matches what the source compiles to;
//   - orphaned: a materialized file whose source is gone;
//   - not published: a file in a Thrift encoding the repository's settings
//     (repo.SettingsFile) do not list.
//
// The package also formats diagnostics as text, JSON or GitHub annotations.
package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"strings"
	"sync"

	"github.com/cfg-dev/cfg/compiler"
	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/repo"
)

// Report is the outcome of a validation.
type Report struct {
	Checked int       // configs and raw configs checked
	Diags   diag.List // compile errors, validator failures and drift, sorted
	// Schemas holds, by config name, the schema declaring the type each
	// compiled config exports (compiler.Output.Schema): the record of
	// types (repo.TypesFile) has the type's name only.
	Schemas map[string]string
}

// Run validates the config repository in fsys, rooted at the repository
// root: the work tree as repo.Repo.FS serves it (no link is followed; one
// is reported), or the compiler.Snapshot that a commit is to hold.
// Materialized files in the Thrift encodings the repository publishes
// (repo.SettingsFile) are checked for every config, and files in an
// encoding it does not publish are reported. head, if not nil, is the
// repository as last committed (the git HEAD commit, see
// gitrepo.Repo.FS), against which a hand-edited materialized file is told
// from a stale one.
func Run(ctx context.Context, fsys, head fs.FS, opts compiler.Options) (*Report, error) {
	tree, err := repo.Scan(fsys)
	if err != nil {
		return nil, err
	}
	sources := tree.Sources()
	have, err := repo.ListMaterialized(fsys)
	if err != nil {
		return nil, err
	}
	settings, err := repo.ReadSettings(fsys)
	var se *repo.SettingsError
	if errors.As(err, &se) {
		d := diag.Errorf(diag.Pos{File: repo.SettingsFile, Line: se.Line, Col: se.Col}, "%s", se.Msg)
		return &Report{Checked: len(sources), Diags: diag.List{d}}, nil
	}
	if err != nil {
		return nil, err
	}
	opts.Emit = settings.Thrift()
	r := &Report{Checked: len(sources), Schemas: map[string]string{}}
	var committed *headTree
	if head != nil {
		committed = &headTree{fsys: head}
	}
	want := map[string]bool{}
	types := map[string]string{}
	failed := false
	var mu sync.Mutex
	// Each output is compared with its file while it is lent: no copy of
	// it is made.
	compiler.New(fsys, opts).CompileEachLent(ctx, sources, func(_ int, o *compiler.Output) {
		var diags diag.List
		if len(o.Diags) > 0 {
			diags = o.Diags
		} else if d := drift(fsys, o, committed); d != nil {
			diags = append(diags, d)
		}
		for _, enc := range opts.Emit {
			if b, ok := o.Encoded[enc]; ok {
				if d := encodingDrift(fsys, o, enc, b); d != nil {
					diags = append(diags, d)
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		failed = failed || len(o.Diags) > 0
		if o.Type != "" {
			types[o.Name] = o.Type
			r.Schemas[o.Name] = o.Schema
		}
		want[o.Path] = true
		if repo.Classify(o.Source) == repo.Config {
			for _, enc := range opts.Emit {
				want[repo.EncodedPath(o.Path, enc)] = true
			}
		}
		r.Diags = append(r.Diags, diags...)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !failed {
		if d := typesDrift(fsys, types); d != nil {
			r.Diags = append(r.Diags, d)
		}
	}
	for _, p := range have {
		switch enc := repo.EncodingOf(p); {
		case want[p]:
		case enc != "" && !settings.Publishes(enc):
			r.Diags = append(r.Diags, diag.Errorf(diag.Pos{File: p}, "not published: the repository publishes %s (%s); add %q to its encodings, or delete the file",
				strings.Join(settings.Encodings, ", "), repo.SettingsFile, enc))
		default:
			r.Diags = append(r.Diags, diag.Errorf(diag.Pos{File: p}, "orphaned: its source is gone (cfg compile deletes it)"))
		}
	}
	r.Diags.Sort()
	return r, nil
}

// typesDrift compares repo.TypesFile with the types the configs compile to.
func typesDrift(fsys fs.FS, types map[string]string) *diag.Diagnostic {
	got, err := fs.ReadFile(fsys, repo.TypesFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && len(types) == 0:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return diag.Errorf(diag.Pos{File: repo.TypesFile}, "missing: the types of the compiled configs are not recorded (run cfg compile)")
	case err != nil:
		return diag.Errorf(diag.Pos{File: repo.TypesFile}, "reading: %v", err)
	case !bytes.Equal(got, repo.EncodeTypes(types)):
		return diag.Errorf(diag.Pos{File: repo.TypesFile}, "stale: differs from the types the configs compile to (run cfg compile)")
	}
	return nil
}

// encodingDrift compares a config's materialized file in an encoding with
// what its source compiles to.
func encodingDrift(fsys fs.FS, o *compiler.Output, enc string, want []byte) *diag.Diagnostic {
	p := repo.EncodedPath(o.Path, enc)
	if same(fsys, p, want) {
		return nil
	}
	got, err := fs.ReadFile(fsys, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return diag.Errorf(diag.Pos{File: p}, "missing: the repository publishes %s (%s) (run cfg compile)", enc, repo.SettingsFile)
	case err != nil:
		return diag.Errorf(diag.Pos{File: p}, "reading materialized config: %v", err)
	case !bytes.Equal(got, want):
		return diag.Errorf(diag.Pos{File: p}, "stale: differs from what %s compiles to (run cfg compile)", o.Source)
	}
	return nil
}

// drift compares one compiled output with its materialized file.
func drift(fsys fs.FS, o *compiler.Output, head *headTree) *diag.Diagnostic {
	if same(fsys, o.Path, o.Data) {
		return nil
	}
	got, err := fs.ReadFile(fsys, o.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return diag.Errorf(diag.Pos{File: o.Path}, "missing: %s has not been compiled (run cfg compile)", o.Source)
	}
	if err != nil {
		return diag.Errorf(diag.Pos{File: o.Path}, "reading materialized config: %v", err)
	}
	if bytes.Equal(got, o.Data) {
		return nil
	}
	pos := diag.Pos{File: o.Path, Line: firstDiffLine(got, o.Data)}
	if repo.Classify(o.Source) == repo.Config && !canonical(got) {
		return diag.Errorf(pos, "hand-edited: not in the form cfg writes; materialized configs are never edited by hand (change %s and run cfg compile)", o.Source)
	}
	if committed, ok := head.read(o.Path); ok && bytes.Equal(committed, o.Data) {
		return diag.Errorf(pos, "hand-edited: changed since the last commit while %s still compiles to the committed content (change the source and run cfg compile)", o.Source)
	}
	return diag.Errorf(pos, "stale: differs from what %s compiles to (run cfg compile)", o.Source)
}

// chunkSize is how much of a materialized file same reads at once.
const chunkSize = 32 << 10

// chunks holds the buffers same reads into, one per comparison running.
var chunks = sync.Pool{New: func() any { return new([chunkSize]byte) }}

// same reports whether the file at p holds exactly want, byte for byte. It
// reads the file in chunks, comparing each as it comes, and keeps none: the
// common case, a file that is what its source compiles to, costs no copy
// of it. A file that differs or cannot be read (missing, a link, a
// directory) is false; the caller reads it whole to tell why.
func same(fsys fs.FS, p string, want []byte) bool {
	f, err := fsys.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := chunks.Get().(*[chunkSize]byte)
	defer chunks.Put(buf)
	for {
		n, err := f.Read(buf[:])
		if n > len(want) || !bytes.Equal(buf[:n], want[:n]) {
			return false
		}
		want = want[n:]
		switch {
		case err == io.EOF:
			return len(want) == 0
		case err != nil:
			return false
		}
	}
}

// canonical reports whether data is JSON in the layout cfg writes.
func canonical(data []byte) bool {
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return false
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, compact.Bytes(), "", "  "); err != nil {
		return false
	}
	indented.WriteByte('\n')
	return bytes.Equal(indented.Bytes(), data)
}

func firstDiffLine(a, b []byte) int {
	line := 1
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return line
		}
		if a[i] == '\n' {
			line++
		}
	}
	return line
}

// headTree reads files of the repository as last committed.
type headTree struct {
	mu   sync.Mutex // go-git trees are not safe for concurrent use
	fsys fs.FS      // the config repository at HEAD
}

func (h *headTree) read(p string) ([]byte, bool) {
	if h == nil {
		return nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	data, err := fs.ReadFile(h.fsys, p)
	return data, err == nil
}
