package compiler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/cfg-dev/cfg/diag"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/schema"
	"github.com/cfg-dev/cfg/stdlib"
)

// DefaultMaxSteps is the default limit on Starlark execution steps for one
// program (a config, a module, or one config's validator checks).
const DefaultMaxSteps = 20_000_000

// Options control a compile.
type Options struct {
	Jobs     int    // configs compiled in parallel; 0 means one per CPU
	MaxSteps uint64 // step limit per program; 0 means DefaultMaxSteps
	// MaxMemory limits the heap of the compile, in bytes; 0 means
	// DefaultMaxMemory. When the live heap passes it, the configs being
	// compiled are stopped and compiled again one at a time; a config that
	// passes it alone fails.
	MaxMemory uint64
	// Timeout limits the wall time of each config (its program, the
	// modules it is first to load and its validators); 0 means
	// DefaultTimeout.
	Timeout  time.Duration
	Stderr   io.Writer             // where print() writes; nil discards
	Progress func(done, total int) // called after each config, if set
	Rebuild  bool                  // Build: ignore the compile cache and compile everything
	// Emit lists encodings written beside the canonical JSON of every
	// compiled config: EncodingThriftBinary, EncodingThriftCompact. Build
	// and validate.Run set it from the repository's settings
	// (repo.SettingsFile).
	Emit []string
	// Snapshot makes Build read every source file once, compile those
	// bytes, and return them with its outputs in Result.Snapshot.
	Snapshot bool
}

// Compiler compiles the configs of one repository, read through an fs.FS
// rooted at the repository root. It caches parsed files, executed modules,
// loaded schemas and validators for its lifetime, which is one run: every
// module is executed once and its frozen globals are shared by all configs.
// A Compiler is safe for concurrent use.
type Compiler struct {
	fsys    fs.FS
	opts    Options
	schemas *schema.Loader
	sources *repo.SourceChecker
	lim     *limits

	parsed     onceMap[*parsedFile]
	modules    onceMap[starlark.StringDict]
	validators onceMap[*validatorFile]
	acyclic    sync.Map // path -> struct{}: load graph below it has no cycle

	printMu sync.Mutex
}

// New returns a compiler reading the repository in fsys.
func New(fsys fs.FS, opts Options) *Compiler {
	if opts.Jobs <= 0 {
		opts.Jobs = runtime.NumCPU()
	}
	if opts.MaxSteps == 0 {
		opts.MaxSteps = DefaultMaxSteps
	}
	if opts.MaxMemory == 0 {
		opts.MaxMemory = DefaultMaxMemory
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	fsys = withStdlib(fsys)
	return &Compiler{fsys: fsys, opts: opts, schemas: schema.NewLoader(fsys), sources: repo.NewSourceChecker(fsys),
		lim: newLimits(opts.MaxMemory, opts.Timeout)}
}

// Output is the result of compiling one config or copying one raw config.
type Output struct {
	Source string    // source path, e.g. "source/feed/cache_job.cconf"
	Name   string    // config name, e.g. "feed/cache_job"
	Path   string    // materialized path, e.g. "materialized_configs/feed/cache_job.json"
	Type   string    // the exported Thrift type, for compiled configs
	Schema string    // the schema declaring Type, as load() names it ("@cfg//canary.thrift")
	Data   []byte    // the materialized bytes; nil when Diags is not empty
	Diags  diag.List // problems found; the config failed if not empty
	// Encoded holds the config in each encoding of Options.Emit, by
	// encoding; the materialized path of each is repo.EncodedPath.
	Encoded map[string][]byte

	enc *encoder // whose buffer Data is, while the output is lent
}

// own gives the output its own copy of Data, and the buffer it was
// encoded in back to the compiler.
func (o *Output) own() {
	if o.enc != nil {
		o.Data = bytes.Clone(o.Data)
		o.enc.put()
		o.enc = nil
	}
}

// release ends the loan of the output's Data (CompileEachLent): the buffer
// it was encoded in goes back to the compiler, and Data is nil.
func (o *Output) release() {
	if o.enc != nil {
		o.enc.put()
		o.enc = nil
	}
	o.Data = nil
}

// CompileAll compiles the given source paths (configs and raw configs) with
// Options.Jobs workers and returns one Output per path, in order.
func (c *Compiler) CompileAll(ctx context.Context, paths []string) []*Output {
	outs := make([]*Output, len(paths))
	c.CompileEach(ctx, paths, func(i int, o *Output) { outs[i] = o })
	return outs
}

// CompileEach compiles paths with Options.Jobs workers and calls fn from
// the worker with each result, so that work on an output (such as writing
// it) overlaps with compiling the others.
func (c *Compiler) CompileEach(ctx context.Context, paths []string, fn func(i int, o *Output)) {
	c.each(ctx, paths, false, fn)
}

// CompileEachLent is CompileEach for a caller that uses each output's Data
// only while fn runs, to write it or to compare it with a file: Data is lent
// to fn. Once fn returns, Data is nil and its memory is reused for the next
// config; a caller that keeps the bytes copies them (the rest of the Output
// is the caller's). It saves CompileEach's copy of every output.
func (c *Compiler) CompileEachLent(ctx context.Context, paths []string, fn func(i int, o *Output)) {
	c.each(ctx, paths, true, fn)
}

// each is CompileEach, or CompileEachLent if lend.
func (c *Compiler) each(ctx context.Context, paths []string, lend bool, fn func(i int, o *Output)) {
	var done atomic.Int64
	defer c.lim.watch()()
	parallel(c.opts.Jobs, len(paths), func(i int) {
		var o *Output
		if err := ctx.Err(); err != nil {
			o = c.failed(paths[i], diag.Errorf(diag.Pos{File: paths[i]}, "not compiled: %v", err))
		} else {
			o = c.compileLent(paths[i])
		}
		if !lend {
			o.own()
		}
		fn(i, o)
		if lend {
			o.release()
		}
		if n := done.Add(1); c.opts.Progress != nil {
			c.opts.Progress(int(n), len(paths))
		}
	})
}

// parallel calls fn(i) for every i in [0, n) from up to jobs goroutines.
func parallel(jobs, n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(jobs, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func (c *Compiler) failed(p string, d ...*diag.Diagnostic) *Output {
	o := &Output{Source: p, Name: repo.ConfigName(p), Path: repo.MaterializedPath(p), Diags: d}
	for _, d := range o.Diags {
		d.Config = o.Name
	}
	return o
}

// Compile compiles one config, or reads one raw config. A source that is
// not a regular file (a symbolic link), whose name breaks the rule of
// config names or that collides with another (repo.CheckSource) fails, and
// so does a config that passes a limit of Options alone.
func (c *Compiler) Compile(p string) *Output {
	o := c.compileLent(p)
	o.own()
	return o
}

// compileLent is Compile, with the output's Data lent (see
// CompileEachLent) when it is a compiled config.
func (c *Compiler) compileLent(p string) *Output {
	defer c.lim.watch()()
	c.lim.exclusive.RLock()
	o, lim := c.compile(p, false)
	c.lim.exclusive.RUnlock()
	if lim != nil && lim.memory {
		// Stopped while sharing the heap with other configs: compile it
		// again alone, so that it fails only for its own memory.
		c.lim.exclusive.Lock()
		o, _ = c.compile(p, true)
		c.lim.exclusive.Unlock()
	}
	return o
}

// compile compiles one config as a job of its own, and returns the limit
// that stopped it, if one did.
func (c *Compiler) compile(p string, exclusive bool) (*Output, *limitError) {
	if repo.Classify(p) != repo.Config {
		return c.compileJob(p, nil), nil
	}
	j := c.lim.start(repo.ConfigName(p), exclusive)
	defer c.lim.finish(j)
	o := c.compileJob(p, j)
	if len(o.Diags) == 0 {
		return o, nil
	}
	return o, j.limit()
}

func (c *Compiler) compileJob(p string, j *job) *Output {
	if err := c.sources.Check(p); err != nil {
		return c.failed(p, diag.Errorf(diag.Pos{File: p}, "%v", err))
	}
	if repo.Classify(p) == repo.Raw {
		data, err := fs.ReadFile(c.fsys, p)
		if err != nil {
			return c.failed(p, diag.Errorf(diag.Pos{File: p}, "reading raw config: %v", err))
		}
		return &Output{Source: p, Name: repo.ConfigName(p), Path: repo.MaterializedPath(p), Data: data}
	}
	if repo.Classify(p) != repo.Config {
		return c.failed(p, diag.Errorf(diag.Pos{File: p}, "not a config: only .cconf files and raw configs are compiled"))
	}
	v, exportPos, diags := c.run(p, j)
	if len(diags) == 0 {
		enc := getEncoder()
		data, errs := enc.encodeRoot(v)
		for _, e := range errs {
			pos, notes := e.at.place(exportPos)
			d := diag.Errorf(pos, "%s", e.err.Error())
			d.Notes = notes
			if e.err.decl != nil {
				d.Notes = append(d.Notes, diag.Note{Pos: *e.err.decl, Msg: "field declared here"})
			}
			diags = append(diags, d)
		}
		if len(diags) == 0 {
			diags = c.runValidators(p, v, exportPos, j)
		}
		if len(diags) == 0 {
			o := &Output{Source: p, Name: repo.ConfigName(p), Path: repo.MaterializedPath(p), Type: v.t.Name, Schema: displayPath(v.t.File), Data: data, enc: enc}
			for _, encoding := range c.opts.Emit {
				b, err := EncodeThrift(v, encoding)
				if err != nil {
					o.release()
					return c.failed(p, diag.Errorf(posOf(exportPos), "encoding %s: %v", encoding, err))
				}
				if o.Encoded == nil {
					o.Encoded = map[string][]byte{}
				}
				o.Encoded[encoding] = b
			}
			return o
		}
		enc.put()
	}
	// A module's diagnostics are shared by every config loading it: each
	// config reports its own copies.
	own := make(diag.List, len(diags))
	for i, d := range diags {
		cp := *d
		cp.Notes = slices.Clip(cp.Notes)
		if d.Pos.File != p {
			cp.Notes = append(cp.Notes, diag.Note{Pos: diag.Pos{File: p}, Msg: fmt.Sprintf("while compiling config %q", repo.ConfigName(p))})
		}
		own[i] = &cp
	}
	own.Sort()
	return c.failed(p, own...)
}

type exportState struct {
	value *Struct
	pos   syntax.Position
}

const exportKey = "cfg.export"

var exportBuiltin = starlark.NewBuiltin("export", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := starlark.UnpackPositionalArgs("export", args, kwargs, 1, &v); err != nil {
		return nil, err
	}
	st, _ := thread.Local(exportKey).(*exportState)
	if st == nil {
		return nil, errors.New("export can only be called by a .cconf config program")
	}
	if st.value != nil {
		return nil, fmt.Errorf("export called twice (first at %s)", posOf(st.pos))
	}
	s, ok := v.(*Struct)
	if !ok {
		return nil, fmt.Errorf("export: got %s, want a Thrift struct value", describe(v))
	}
	st.value, st.pos = s, thread.CallFrame(1).Pos
	return starlark.None, nil
})

// run executes a config program and returns its exported value.
func (c *Compiler) run(p string, j *job) (*Struct, syntax.Position, diag.List) {
	pf, err := c.parse(p)
	if err != nil {
		return nil, syntax.Position{}, c.diagnose(err)
	}
	if d := c.checkCycles(p, pf); d != nil {
		return nil, syntax.Position{}, diag.List{d}
	}
	predeclared := starlark.StringDict{"export": exportBuiltin}
	prog, err := starlark.FileProgram(pf.f, predeclared.Has)
	if err != nil {
		return nil, syntax.Position{}, c.diagnose(err)
	}
	thread := c.newThread(p, j)
	st := &exportState{}
	thread.SetLocal(exportKey, st)
	if _, err := prog.Init(thread, predeclared); err != nil {
		if lim := j.limit(); lim != nil {
			return nil, syntax.Position{}, diag.List{c.limitDiag(p, err, lim)}
		}
		return nil, syntax.Position{}, c.diagnose(err)
	}
	if st.value == nil {
		return nil, syntax.Position{}, diag.List{diag.Errorf(diag.Pos{File: p, Line: 1, Col: 1}, "config does not call export()")}
	}
	st.value.Freeze()
	return st.value, st.pos, nil
}

// newThread returns a thread for a program run on behalf of job j.
func (c *Compiler) newThread(name string, j *job) *starlark.Thread {
	t := &starlark.Thread{
		Name:  name,
		Load:  c.load,
		Print: c.print,
	}
	t.SetMaxExecutionSteps(c.opts.MaxSteps)
	t.OnMaxSteps = func(t *starlark.Thread) {
		t.Cancel(fmt.Sprintf("the program passed the limit of %d steps (--max-steps)", c.opts.MaxSteps))
	}
	if j != nil {
		j.add(t)
	}
	return t
}

// limitDiag reports a config stopped by a limit, where its program was
// when it was stopped.
func (c *Compiler) limitDiag(p string, err error, lim *limitError) *diag.Diagnostic {
	d := diag.Errorf(diag.Pos{File: p, Line: 1, Col: 1}, "%s", lim.msg)
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		d = c.evalDiag(ee)
		d.Msg = lim.msg
	}
	// Stopped inside a module it loads: where the module was.
	var me *moduleError
	if errors.As(err, &me) && me.limit && len(me.diags) > 0 {
		d.Notes = append(d.Notes, diag.Note{Pos: me.diags[0].Pos, Msg: "raised here"})
	}
	return d
}

func (c *Compiler) print(thread *starlark.Thread, msg string) {
	if c.opts.Stderr == nil {
		return
	}
	c.printMu.Lock()
	defer c.printMu.Unlock()
	fmt.Fprintf(c.opts.Stderr, "%s: %s\n", posOf(thread.CallFrame(1).Pos), msg)
}

// moduleError carries the diagnostics of a module that failed to load, so
// that every config loading it reports the module's own positions.
type moduleError struct {
	diags diag.List
	limit bool // stopped by a limit of the config that ran it: not kept
}

func (e *moduleError) Error() string { return e.diags.Error() }

// resolveLoad maps a load() argument to a repository path: "//x" is
// source/x, other paths are relative to the loading file.
func resolveLoad(from, module string) (string, error) {
	var p string
	if rest, ok := strings.CutPrefix(module, stdlib.LoadPrefix); ok {
		p = path.Join(stdlib.Prefix, rest)
	} else if rest, ok := strings.CutPrefix(module, "//"); ok {
		p = path.Join(repo.SourceDir, rest)
	} else {
		p = path.Join(path.Dir(from), module)
	}
	if !strings.HasPrefix(p, repo.SourceDir+"/") && !strings.HasPrefix(p, stdlib.Prefix+"/") {
		return "", fmt.Errorf("%q is outside %s/", module, repo.SourceDir)
	}
	switch repo.Classify(p) {
	case repo.Schema, repo.Module:
		return p, nil
	}
	return "", fmt.Errorf("only .thrift and .cinc files can be loaded")
}

// displayPath shows a repository path the way load() spells it.
func displayPath(p string) string {
	if rest, ok := strings.CutPrefix(p, stdlib.Prefix+"/"); ok {
		return stdlib.LoadPrefix + rest
	}
	return "//" + strings.TrimPrefix(p, repo.SourceDir+"/")
}

// load implements starlark.Thread.Load for every program of the run.
func (c *Compiler) load(thread *starlark.Thread, module string) (starlark.StringDict, error) {
	from := thread.CallFrame(0).Pos.Filename()
	p, err := resolveLoad(from, module)
	if err != nil {
		return nil, err
	}
	j := jobOf(thread)
	for {
		g, err := c.loadModule(p, j)
		if err != nil && isLimit(err) && j.limit() == nil {
			// Another config, stopped by a limit, was running the
			// module: run it again for this one.
			continue
		}
		return g, err
	}
}

// loadModule loads a schema or executes a module once, on behalf of job j.
func (c *Compiler) loadModule(p string, j *job) (starlark.StringDict, error) {
	return c.modules.get(p, func() (starlark.StringDict, error) {
		if _, err := fs.Stat(c.fsys, p); errors.Is(err, fs.ErrNotExist) {
			return nil, errors.New("file does not exist")
		} else if err != nil {
			// A link, or a name starting with a dot: reported at the load.
			var pe *fs.PathError
			if errors.As(err, &pe) && pe.Path == p {
				err = pe.Err
			}
			return nil, err
		}
		if repo.Classify(p) == repo.Schema {
			f, err := c.schemas.Load(p)
			if err != nil {
				var l diag.List
				if errors.As(err, &l) {
					return nil, &moduleError{diags: l}
				}
				return nil, err
			}
			return schemaGlobals(f), nil
		}
		return c.execModule(p, nil, j)
	})
}

// execModule executes a .cinc module or a validator file once and returns
// its frozen globals.
func (c *Compiler) execModule(p string, predeclared starlark.StringDict, j *job) (starlark.StringDict, error) {
	pf, err := c.parse(p)
	if err != nil {
		return nil, &moduleError{diags: c.diagnose(err)}
	}
	prog, err := starlark.FileProgram(pf.f, predeclared.Has)
	if err != nil {
		return nil, &moduleError{diags: c.diagnose(err)}
	}
	g, err := prog.Init(c.newThread(p, j), predeclared)
	if err != nil {
		if lim := j.limit(); lim != nil {
			return nil, &moduleError{diag.List{c.limitDiag(p, err, lim)}, true}
		}
		return nil, &moduleError{diags: c.diagnose(err)}
	}
	g.Freeze()
	return g, nil
}

// parsedFile is a parsed Starlark file and its load statements.
type parsedFile struct {
	f     *syntax.File
	loads []loadRef
}

type loadRef struct {
	module string // as written
	path   string // resolved, or "" if it does not resolve
	pos    syntax.Position
}

var fileOptions = &syntax.FileOptions{Set: true}

// parse parses a Starlark file. Modules and validator files are parsed
// once and kept for the run; a config is parsed anew at each call and its
// tree is not kept, so that a compile holds the trees of the configs being
// compiled, not those of the whole repository.
func (c *Compiler) parse(p string) (*parsedFile, error) {
	read := func() (*parsedFile, error) {
		src, err := fs.ReadFile(c.fsys, p)
		if err != nil {
			return nil, err
		}
		return parseSource(p, src)
	}
	if repo.Classify(p) == repo.Config {
		return read()
	}
	return c.parsed.get(p, read)
}

// checkCycles reports a load cycle reachable from p, parsed as pf, read
// statically from load statements, so that no program runs into one.
func (c *Compiler) checkCycles(p string, pf *parsedFile) *diag.Diagnostic {
	root := pf
	var stack []string
	onStack := map[string]bool{}
	var visit func(p string) *diag.Diagnostic
	visit = func(p string) *diag.Diagnostic {
		if _, ok := c.acyclic.Load(p); ok {
			return nil
		}
		pf := root
		if len(stack) > 0 {
			var err error
			if pf, err = c.parse(p); err != nil {
				return nil // reported when the file is loaded
			}
		}
		stack = append(stack, p)
		onStack[p] = true
		for _, l := range pf.loads {
			if repo.Classify(l.path) != repo.Module {
				continue
			}
			if onStack[l.path] {
				i := 0
				for stack[i] != l.path {
					i++
				}
				cycle := make([]string, 0, len(stack)-i+1)
				for _, s := range stack[i:] {
					cycle = append(cycle, displayPath(s))
				}
				cycle = append(cycle, displayPath(l.path))
				return diag.Errorf(posOf(l.pos), "load cycle: %s", strings.Join(cycle, " -> "))
			}
			if d := visit(l.path); d != nil {
				return d
			}
		}
		stack = stack[:len(stack)-1]
		onStack[p] = false
		if len(stack) > 0 { // a module; a config is visited once
			c.acyclic.Store(p, struct{}{})
		}
		return nil
	}
	return visit(p)
}

func posOf(p syntax.Position) diag.Pos {
	if !p.IsValid() {
		return diag.Pos{}
	}
	return diag.Pos{File: p.Filename(), Line: int(p.Line), Col: int(p.Col)}
}

// diagnose turns an error from parsing or running Starlark into positioned
// diagnostics.
func (c *Compiler) diagnose(err error) diag.List {
	var me *moduleError
	if errors.As(err, &me) {
		return me.diags
	}
	var se syntax.Error
	if errors.As(err, &se) {
		return diag.List{diag.Errorf(posOf(se.Pos), "%s", se.Msg)}
	}
	var rl resolve.ErrorList
	if errors.As(err, &rl) {
		var l diag.List
		for _, e := range rl {
			l = append(l, diag.Errorf(posOf(e.Pos), "%s", e.Msg))
		}
		return l
	}
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return diag.List{c.evalDiag(ee)}
	}
	var le *repo.LinkError
	if errors.As(err, &le) {
		return diag.List{diag.Errorf(diag.Pos{File: le.Path}, "%s", le.Problem())}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return diag.List{diag.Errorf(diag.Pos{File: pe.Path}, "%v", pe.Err)}
	}
	return diag.List{diag.Errorf(diag.Pos{}, "%v", err)}
}

const builtinFile = "<builtin>"

// evalDiag positions a Starlark runtime error. The primary position is the
// innermost frame in the top-level program's own file (the config being
// compiled, when a config's call into a module failed), with a note where
// the error was raised if that is elsewhere. A type error raised by a
// struct constructor is positioned at the keyword argument that caused it.
func (c *Compiler) evalDiag(ee *starlark.EvalError) *diag.Diagnostic {
	stack := ee.CallStack
	inner := len(stack) - 1
	for inner > 0 && stack[inner].Pos.Filename() == builtinFile {
		inner--
	}
	at := inner
	for at > 0 && stack[at].Pos.Filename() != stack[0].Pos.Filename() {
		at--
	}
	msg := ee.Msg
	var ve *valueError
	if errors.As(ee, &ve) {
		msg = ve.Error()
	}
	d := diag.Errorf(posOf(stack[at].Pos), "%s", msg)
	if ve != nil && at < len(stack)-1 && ve.kwarg != "" {
		if pos, ok := c.kwargPos(stack[at].Pos, ve.kwarg); ok {
			d.Pos = pos
		}
	}
	if at != inner {
		d.Notes = append(d.Notes, diag.Note{Pos: posOf(stack[inner].Pos), Msg: "raised here"})
	}
	if ve != nil && ve.decl != nil {
		d.Notes = append(d.Notes, diag.Note{Pos: *ve.decl, Msg: "field declared here"})
	}
	for _, fr := range stack[:inner+1] {
		d.Stack = append(d.Stack, diag.Frame{Pos: posOf(fr.Pos), Func: fr.Name})
	}
	return d
}

// kwargPos finds the keyword argument name= of the call whose '(' is at call.
func (c *Compiler) kwargPos(call syntax.Position, name string) (diag.Pos, bool) {
	pf, err := c.parse(call.Filename())
	if err != nil {
		return diag.Pos{}, false
	}
	var found *syntax.Ident
	syntax.Walk(pf.f, func(n syntax.Node) bool {
		if found != nil {
			return false
		}
		ce, ok := n.(*syntax.CallExpr)
		if !ok || ce.Lparen.Line != call.Line || ce.Lparen.Col != call.Col {
			return true
		}
		for _, a := range ce.Args {
			if b, ok := a.(*syntax.BinaryExpr); ok && b.Op == syntax.EQ {
				if id, ok := b.X.(*syntax.Ident); ok && id.Name == name {
					found = id
				}
			}
		}
		return found == nil
	})
	if found == nil {
		return diag.Pos{}, false
	}
	return posOf(found.NamePos), true
}

// onceMap computes a value per key once, even under concurrent callers.
type onceMap[V any] struct {
	mu sync.Mutex
	m  map[string]*onceEntry[V]
}

type onceEntry[V any] struct {
	once sync.Once
	v    V
	err  error
}

func (m *onceMap[V]) get(key string, f func() (V, error)) (V, error) {
	m.mu.Lock()
	if m.m == nil {
		m.m = map[string]*onceEntry[V]{}
	}
	e := m.m[key]
	if e == nil {
		e = &onceEntry[V]{}
		m.m[key] = e
	}
	m.mu.Unlock()
	e.once.Do(func() { e.v, e.err = f() })
	if e.err != nil && isLimit(e.err) {
		// Stopped by a limit of the config that ran it: not a property
		// of the file, so the next caller computes it again.
		m.mu.Lock()
		if m.m[key] == e {
			delete(m.m, key)
		}
		m.mu.Unlock()
	}
	return e.v, e.err
}
