package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/txtar"
	"github.com/spf13/cobra"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/cfg-dev/cfg/cmd/cfg/internal/cli"
	"github.com/cfg-dev/cfg/internal/racecheck"
	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// The README and examples/README.md show commands, files and output. Each
// fenced block is preceded by a marker, <!-- readme: CHECK ARGS -->, naming
// how TestReadme checks it against the real files and the real output of
// cfg; a block without one fails the test, so no block goes unchecked.

// moduleRoot is the root of the module, from this package's directory.
const moduleRoot = "../.."

// block is a fenced block of a markdown file and its marker.
type block struct {
	file  string // relative to the module root
	line  int    // of the opening fence
	check string
	args  []string
	text  string // the content, without the fences and their indentation
}

func (b block) String() string { return fmt.Sprintf("%s:%d (%s)", b.file, b.line, b.check) }

var markerRE = regexp.MustCompile(`^\s*<!-- readme: (.+) -->\s*$`)

// readBlocks returns the fenced blocks of a markdown file.
func readBlocks(t *testing.T, file string) []block {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(moduleRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []block
	var cur *block
	var indent, marker string
	markerLine := -1
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += strings.TrimPrefix(line, indent) + "\n"
		case strings.HasPrefix(trimmed, "```"):
			indent = line[:len(line)-len(strings.TrimLeft(line, " "))]
			cur = &block{file: file, line: i + 1}
			if markerLine == i-1 {
				words := strings.Fields(marker)
				cur.check, cur.args = words[0], words[1:]
			}
		case markerRE.MatchString(line):
			marker, markerLine = markerRE.FindStringSubmatch(line)[1], i
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: a block that does not end", file, cur.line)
	}
	return blocks
}

// TestReadme checks every block of README.md and examples/README.md.
func TestReadme(t *testing.T) {
	t.Parallel() // it runs the canary demo, which waits on its phases
	checks := map[string]func(t *testing.T, b block){
		"build-and-check":    checkBuildAndCheck,
		"test-command":       checkTestCommand,
		"walkthrough":        nil, // all together, below
		"walkthrough-output": nil,
		"tree":               checkTree,
		"excerpt":            checkExcerpt,
		"mistake":            checkMistake,
		"commands":           checkCommands,
		"store-damaged":      checkStoreDamaged,
		"port-error":         checkPortError,
		"transcript":         checkTranscript,
		"git-workflow":       checkGitWorkflow,
		"settings":           checkSettings,
		"name-rule-error":    checkNameRuleError,
		"load-output":        checkLoadOutput,
		"go-api":             checkGoAPI,
		"script":             checkScript,
		"limits":             checkLimits,
		"canary-demo":        checkCanaryDemo,
	}
	used := map[string]bool{}
	var walkthrough []block
	outputs := map[string]string{}
	for _, file := range []string{"README.md", "examples/README.md"} {
		for _, b := range readBlocks(t, file) {
			check, ok := checks[b.check]
			switch {
			case b.check == "":
				t.Errorf("%s:%d: a block without a <!-- readme: CHECK --> marker before it: every block is checked against real files or output", b.file, b.line)
				continue
			case !ok:
				t.Errorf("%s: no check %q", b, b.check)
				continue
			}
			used[b.check] = true
			switch b.check {
			case "walkthrough":
				walkthrough = append(walkthrough, b)
			case "walkthrough-output":
				outputs[b.args[0]] = b.text
			default:
				t.Run(fmt.Sprintf("%s:%d", b.file, b.line), func(t *testing.T) {
					t.Parallel() // each check has its own directories and processes
					check(t, b)
				})
			}
		}
	}
	for name := range checks {
		if !used[name] {
			t.Errorf("check %q checks no block", name)
		}
	}
	t.Run("walkthrough", func(t *testing.T) { checkWalkthrough(t, walkthrough, outputs) })
}

// The top of the README: exactly two commands, and the first works.

func checkBuildAndCheck(t *testing.T, b block) {
	want := "go build -o bin/cfg ./cmd/cfg && bin/cfg compile --root examples/jobs && bin/cfg validate --root examples/jobs\n"
	if b.text != want {
		t.Fatalf("the first command of the README is %q, want %q", b.text, want)
	}
	// go build ./cmd/cfg is what built this test; the rest runs on a copy.
	dir := t.TempDir()
	copyDir(t, filepath.Join(moduleRoot, "examples/jobs"), filepath.Join(dir, "examples/jobs"))
	for _, args := range [][]string{{"compile", "--root", "examples/jobs"}, {"validate", "--root", "examples/jobs"}} {
		_, stderr, code := runCode(t, dir, args...)
		if code != 0 {
			t.Errorf("cfg %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
		}
		if args[0] == "validate" && stderr != "2 configs checked, no problems\n" {
			t.Errorf("cfg validate: %q", stderr)
		}
	}
	blocks := readBlocks(t, "README.md")
	var top []string
	for _, b := range blocks {
		if b.check == "walkthrough" {
			break
		}
		top = append(top, b.check)
	}
	if !slices.Equal(top, []string{"build-and-check", "test-command"}) {
		t.Errorf("blocks before \"Your own repository\": %v, want the two newcomer commands", top)
	}
}

func checkTestCommand(t *testing.T, b block) {
	if b.text != "scripts/test.sh\n" {
		t.Fatalf("the test command is %q, want scripts/test.sh", b.text)
	}
	fi, err := os.Stat(filepath.Join(moduleRoot, "scripts/test.sh"))
	if err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("scripts/test.sh: %v, mode %v: want an executable", err, fi.Mode())
	}
	if out, err := exec.Command("bash", filepath.Join(moduleRoot, "scripts/test.sh"), "--check").CombinedOutput(); err != nil {
		t.Errorf("scripts/test.sh --check: %v\n%s", err, out)
	}
}

// Files.

// checkTree checks a listing of a repository: every file it names exists,
// and every file of the repository is named.
func checkTree(t *testing.T, b block) {
	dir := b.args[0]
	lines := strings.Split(strings.TrimSpace(b.text), "\n")
	if lines[0] != dir+"/" {
		t.Fatalf("first line %q, want %q", lines[0], dir+"/")
	}
	var listed []string
	for _, l := range lines[1:] {
		listed = append(listed, strings.Fields(l)[0])
	}
	files, err := listedFiles(filepath.Join(moduleRoot, dir))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	if !slices.Equal(files, listed) {
		t.Errorf("listing of %s: %v, files %v", dir, listed, files)
	}
}

// listedFiles returns the files under root that a listing names, sorted:
// all but those whose name, or a directory's on their path, starts with
// a dot (the compiler's cache that running the example leaves, .cfg/).
func listedFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(files)
	return files, err
}

// TestListedFilesAfterCompile: a newcomer runs the README's first
// command, which compiles the example and leaves the compiler's cache in
// it, then the second, which checks the README's listing of the example
// against its files: the cache is not one of them.
func TestListedFilesAfterCompile(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"source/a.cconf", "materialized_configs/a.json", ".cfg/compile-cache.gob", ".hidden"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := listedFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"materialized_configs/a.json", "source/a.cconf"}; !slices.Equal(got, want) {
		t.Errorf("listedFiles = %q, want %q", got, want)
	}
}

// checkExcerpt checks a block against a file: its lines are runs of the
// file's lines, in order, with "..." standing for lines left out. A first
// line "# PATH" names the file.
func checkExcerpt(t *testing.T, b block) {
	data, err := os.ReadFile(filepath.Join(moduleRoot, b.args[0]))
	if err != nil {
		t.Fatal(err)
	}
	text := b.text
	if first, rest, _ := strings.Cut(text, "\n"); strings.HasPrefix(first, "# ") && strings.HasSuffix(b.args[0], strings.TrimPrefix(first, "# ")) {
		text = rest
	}
	if err := excerpt(text, string(data)); err != nil {
		t.Errorf("not an excerpt of %s: %v", b.args[0], err)
	}
}

// excerpt checks that want's runs of lines, separated by lines "...",
// appear in got in order.
func excerpt(want, got string) error {
	gotLines := strings.Split(got, "\n")
	pos := 0
	for _, run := range splitRuns(want) {
		i := indexRun(gotLines[pos:], run)
		if i < 0 {
			return fmt.Errorf("these lines, in this order after what comes before:\n%s\n--- in:\n%s", strings.Join(run, "\n"), got)
		}
		pos += i + len(run)
	}
	return nil
}

func splitRuns(text string) [][]string {
	var runs [][]string
	var cur []string
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.TrimSpace(l) == "..." {
			runs = append(runs, cur)
			cur = nil
			continue
		}
		cur = append(cur, l)
	}
	return append(runs, cur)
}

func indexRun(lines, run []string) int {
	for i := 0; i+len(run) <= len(lines); i++ {
		if slices.Equal(lines[i:i+len(run)], run) {
			return i
		}
	}
	return -1
}

func checkSettings(t *testing.T, b block) {
	if _, err := repo.DecodeSettings([]byte(b.text)); err != nil {
		t.Errorf("cfg.json: %v", err)
	}
}

// checkGoAPI checks a Go snippet using the package the marker names (a
// directory of the module): it parses, and every exported name it takes
// from the package (as its last path element) is declared there.
func checkGoAPI(t *testing.T, b block) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "snippet.go", "package p\nfunc _() {\n"+b.text+"}\n", 0)
	if err != nil {
		t.Fatalf("the snippet does not parse: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(moduleRoot, b.args[0], "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("package %s: no Go files (%v)", b.args[0], err)
	}
	// The package's top-level names: types, functions, constants, variables.
	declared := map[string]bool{}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		pf, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range pf.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					declared[d.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch spec := spec.(type) {
					case *ast.TypeSpec:
						declared[spec.Name.Name] = true
					case *ast.ValueSpec:
						for _, n := range spec.Names {
							declared[n.Name] = true
						}
					}
				}
			}
		}
	}
	name := path.Base(b.args[0])
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		if sel, ok := node.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == name {
				n++
				if !declared[sel.Sel.Name] {
					t.Errorf("%s.%s: not declared in %s", name, sel.Sel.Name, b.args[0])
				}
			}
		}
		return true
	})
	if n == 0 {
		t.Errorf("the snippet uses nothing of %s", b.args[0])
	}
}

// checkScript checks a shell script without running it: every cfg
// command names a command that exists with flags it takes, every package
// go build builds exists, and every file cp copies exists (in the module,
// or in the directory the marker names for the script's cd into a copy of
// it).
func checkScript(t *testing.T, b block) {
	root := cli.NewRootCmd(&cli.Factory{IO: &cli.IOStreams{}, Getwd: os.Getwd})
	exists := func(p string) bool {
		for _, dir := range []string{moduleRoot, filepath.Join(moduleRoot, b.args[0])} {
			if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
				return true
			}
		}
		return false
	}
	cfgs := 0
	for _, words := range shellCommands(t, b.text) {
		line := strings.Join(words, " ")
		switch {
		case len(words) == 0:
		case words[0] == "cfg":
			cfgs++
			checkCfgCommand(t, root, words[1:])
		case words[0] == "go" && len(words) > 1 && words[1] == "build":
			if pkg := words[len(words)-1]; !exists(pkg) {
				t.Errorf("%q: no package %s", line, pkg)
			}
		case words[0] == "cp":
			for _, src := range words[1 : len(words)-1] {
				if !strings.HasPrefix(src, "-") && !exists(src) {
					t.Errorf("%q: no file %s", line, src)
				}
			}
		}
	}
	if cfgs == 0 {
		t.Error("the script runs no cfg command")
	}
}

// Output of cfg.

// elapsedRE matches the time a command took.
var elapsedRE = regexp.MustCompile(`\bin [0-9.]+(ns|µs|ms|s)\b`)

// sameOutput checks that want is an excerpt of got, times aside.
func sameOutput(t *testing.T, what, want, got string) {
	t.Helper()
	if err := excerpt(elapsedRE.ReplaceAllString(want, "in TIME"), elapsedRE.ReplaceAllString(got, "in TIME")); err != nil {
		t.Errorf("%s: the README's output is not what cfg prints: %v", what, err)
	}
}

// editFile replaces old by new in the file at name, once.
func editFile(t *testing.T, name, old, new string) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s does not hold %q", name, old)
	}
	if err := os.WriteFile(name, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkMistake makes the README's mistakes in examples/jobs: memory_mb =
// "lots" (the block) and then 100000 (the validator's message, in the
// text after it).
func checkMistake(t *testing.T, b block) {
	dir := t.TempDir()
	copyDir(t, filepath.Join(moduleRoot, "examples/jobs"), filepath.Join(dir, "examples/jobs"))
	config := filepath.Join(dir, "examples/jobs/source/feed/cache_job.cconf")
	editFile(t, config, "memory_mb = 32768", `memory_mb = "lots"`)
	_, stderr, code := runCode(t, dir, "compile", "--root", "examples/jobs")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	sameOutput(t, `memory_mb = "lots"`, b.text, stderr)

	editFile(t, config, `memory_mb = "lots"`, "memory_mb = 100000")
	_, stderr, _ = runCode(t, dir, "compile", "--root", "examples/jobs")
	readme, err := os.ReadFile(filepath.Join(moduleRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	msg := "Job.resources: validator failed: memory_mb must be at most 65536, got 100000"
	if !strings.Contains(stderr, ": "+msg+"\n") || !bytes.Contains(readme, []byte("`"+msg+"`")) {
		t.Errorf("memory_mb = 100000: cfg prints\n%s\nand the README must quote %q", stderr, msg)
	}
}

// checkPortError sets port = 70000 in examples/jobs' cache_job.cconf, on
// the line the block names.
func checkPortError(t *testing.T, b block) {
	dir := t.TempDir()
	copyDir(t, filepath.Join(moduleRoot, "examples/jobs"), dir)
	editFile(t, filepath.Join(dir, "source/feed/cache_job.cconf"), "port = 11211", "port = 70000")
	_, stderr, _ := runCode(t, dir, "compile")
	sameOutput(t, "port = 70000", b.text, stderr)
}

// checkNameRuleError compiles a config whose name breaks the rule.
func checkNameRuleError(t *testing.T, b block) {
	dir := t.TempDir()
	copyDir(t, filepath.Join(moduleRoot, "examples/jobs"), dir)
	if err := os.MkdirAll(filepath.Join(dir, "source/team"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "source/team/a,b.cconf"), []byte("x = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, _ := runCode(t, dir, "compile")
	sameOutput(t, "source/team/a,b.cconf", b.text, stderr)
}

// checkLimits compiles the configs of compile_limits.txtar that pass the
// memory and the time limit, with limits lower than the defaults the
// README shows (which take gigabytes and a minute to pass).
func checkLimits(t *testing.T, b block) {
	a, err := txtar.ParseFile("testdata/script/compile_limits.txtar")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range a.Files {
		if !strings.HasPrefix(f.Name, "source/") {
			continue
		}
		name := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// One limit at a time: a loaded machine may take 500ms to pass 32MiB.
	var got string
	for _, args := range [][]string{{"--max-memory", "32MiB", "source/grow.cconf"}, {"--timeout", "500ms", "source/square.cconf"}} {
		_, stderr, code := runCode(t, dir, append([]string{"compile"}, args...)...)
		if code != 1 {
			t.Errorf("cfg compile %s: exit %d, want 1", strings.Join(args, " "), code)
		}
		got += stderr
	}
	// Each line of the block is a diagnostic, whose notes it leaves out.
	want := strings.NewReplacer("limit of 2GiB", "limit of 32MiB", "limit of 1m0s", "limit of 500ms").Replace(b.text)
	// The growing config is stopped at the step after the sample that
	// saw the limit passed: the doubling, or on a loaded machine the
	// loop's next step. Its position is left out.
	growAt := regexp.MustCompile(`source/grow\.cconf:[0-9]+:[0-9]+:`)
	want = growAt.ReplaceAllString(want, "source/grow.cconf:LINE:COL:")
	got = growAt.ReplaceAllString(got, "source/grow.cconf:LINE:COL:")
	sameOutput(t, "the limits", strings.Join(strings.Split(strings.TrimSpace(want), "\n"), "\n...\n"), got)
}

// checkTranscript runs a transcript ("$ command" lines, each followed by
// an excerpt of its output, stdout and stderr together) with bash in a
// copy of the repository the marker names.
func checkTranscript(t *testing.T, b block) {
	dir := t.TempDir()
	copyDir(t, filepath.Join(moduleRoot, b.args[0]), dir)
	runTranscript(t, dir, b.text)
}

// runTranscript runs the transcript text in dir, with env added to this
// process's environment.
func runTranscript(t *testing.T, dir, text string, env ...string) {
	t.Helper()
	cmd, want := "", ""
	flush := func() {
		if cmd == "" {
			return
		}
		c := exec.Command("bash", "-c", cmd)
		c.Dir = dir
		c.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
		out, _ := c.CombinedOutput()
		sameOutput(t, cmd, want, string(out))
	}
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if c, ok := strings.CutPrefix(l, "$ "); ok {
			flush()
			cmd, want = c, ""
			continue
		}
		want += l + "\n"
	}
	flush()
}

// checkGitWorkflow runs the git workflow's transcript in a git repository
// of examples/jobs in which the cache's memory was raised (what the
// transcript's "cfg diff" shows).
func checkGitWorkflow(t *testing.T, b block) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	dir := t.TempDir()
	copyDir(t, filepath.Join(moduleRoot, "examples/jobs"), dir)
	if out, err := exec.Command("git", "-C", dir, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	if _, stderr, code := runCode(t, dir, "commit", "-m", "initial"); code != 0 {
		t.Fatalf("cfg commit: %s", stderr)
	}
	editFile(t, filepath.Join(dir, "source/feed/cache_job.cconf"), "memory_mb = 32768", "memory_mb = 49152")
	runTranscript(t, dir, b.text, "CFG_AUTHOR_NAME=Ann", "CFG_AUTHOR_EMAIL=ann@example.com")
	stdout, _, _ := runCode(t, dir, "log", "-n", "1", "feed/cache_job")
	if !strings.Contains(stdout, "    feed: more memory for the cache\n") {
		t.Errorf("cfg log after the transcript's commit:\n%s", stdout)
	}
}

// checkCommands checks commands without running them: each cfg command
// names a command that exists with flags it takes, and each cp copies a
// file that exists (in the directory the marker names).
func checkCommands(t *testing.T, b block) {
	root := cli.NewRootCmd(&cli.Factory{IO: &cli.IOStreams{}, Getwd: os.Getwd})
	for _, words := range shellCommands(t, b.text) {
		line := strings.Join(words, " ")
		switch words[0] {
		case "cfg":
			checkCfgCommand(t, root, words[1:])
		case "cp":
			if _, err := os.Stat(filepath.Join(moduleRoot, b.args[0], words[1])); err != nil {
				t.Errorf("%q: %v", line, err)
			}
		case "etcd":
			// etcd's own flags, as its server parses them, in a process of
			// their own (etcdFlagsMain).
			if out, err := exec.Command("etcd-flags", words[1:]...).CombinedOutput(); err != nil {
				t.Errorf("%q: %v\n%s", line, err, out)
			}
		default:
			t.Errorf("%q: a command this check does not know", line)
		}
	}
}

func checkCfgCommand(t *testing.T, root *cobra.Command, args []string) {
	t.Helper()
	cmd, rest, err := root.Find(args)
	if err == nil {
		err = cmd.ParseFlags(rest)
	}
	if err != nil {
		t.Errorf("cfg %s: %v", strings.Join(args, " "), err)
	}
}

// checkStoreDamaged starts cfg serve on a truncated store: it exits 3
// with the README's message, numbers and paths aside.
func checkStoreDamaged(t *testing.T, b block) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenBolt(filepath.Join(data, "cfg.db"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Truncate(filepath.Join(data, "cfg.db"), 8192); err != nil {
		t.Fatal(err)
	}
	r := configRepo(t)
	_, stderr, code := runCode(t, dir, "serve", "--repo", r, "--data-dir", data, "--listen", "127.0.0.1:0")
	if code != 3 {
		t.Errorf("exit %d, want 3", code)
	}
	pattern := regexp.QuoteMeta(strings.TrimSpace(strings.ReplaceAll(b.text, "/var/lib/cfg", data)))
	pattern = regexp.MustCompile(`[0-9]+`).ReplaceAllString(pattern, `[0-9]+`)
	if !regexp.MustCompile("(?m)^" + pattern + "$").MatchString(stderr) {
		t.Errorf("cfg serve on a truncated store prints\n%s\nwant (numbers aside)\n%s", stderr, b.text)
	}
}

// checkLoadOutput runs the demo's load driver for a second against a
// server and compares the shape of its line, numbers aside.
func checkLoadOutput(t *testing.T, b block) {
	if testing.Short() {
		t.Skip("builds and runs load")
	}
	racecheck.SkipUnder(t, "runs a program built without the race detector")
	load := exampleBinary(t, "canary/load")
	srv := startTestServer(t)
	out, err := exec.Command(load, "-targets", srv, "-duration", "1s").CombinedOutput()
	if err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	num := regexp.MustCompile(`[0-9][0-9.]*`)
	pattern := num.ReplaceAllString(regexp.QuoteMeta(strings.TrimSpace(strings.Replace(b.text, "http://127.0.0.1:9101", srv, 1))), `[0-9.]+`)
	if !regexp.MustCompile("(?m)^" + pattern + "$").Match(out) {
		t.Errorf("load prints\n%s\nwant (numbers aside)\n%s", out, b.text)
	}
}

// The walkthrough: the README's commands are the script's.

// walkthroughScript is the testscript that runs the README's "Your own
// repository".
const walkthroughScript = "testdata/script/readme_own_repository.txtar"

// setupOnly are the README's commands that the script does not run: the
// clone is this checkout, and this test binary is the cfg that go install
// puts on PATH.
var setupOnly = []string{"git clone https://github.com/cfg-dev/cfg", "go install ./cmd/cfg"}

// walkthroughPorts are the README's ports and the script's variables for
// them.
var walkthroughPorts = strings.NewReplacer("7480", "$DAEMON_PORT", "7481", "$AGENT_PORT")

func checkWalkthrough(t *testing.T, blocks []block, outputs map[string]string) {
	var readme [][]string
	for _, b := range blocks {
		for _, words := range shellCommands(t, walkthroughPorts.Replace(b.text)) {
			if !slices.Contains(setupOnly, strings.Join(words, " ")) {
				readme = append(readme, words)
			}
		}
	}
	a, err := txtar.ParseFile(walkthroughScript)
	if err != nil {
		t.Fatal(err)
	}
	var script [][]string
	bg := regexp.MustCompile(` &\w+&$`)
	for _, line := range strings.Split(string(a.Comment), "\n") {
		if c, ok := strings.CutPrefix(line, "exec "); ok {
			c = bg.ReplaceAllString(c, "")
			if sh, ok := strings.CutPrefix(c, "sh -c "); ok {
				c = strings.Trim(sh, "'")
			}
			script = append(script, shellCommands(t, c)...)
		} else if strings.HasPrefix(line, "cd ") {
			script = append(script, shellCommands(t, line)...)
		}
	}
	if !slices.EqualFunc(readme, script, slices.Equal[[]string]) {
		t.Errorf("the README's \"Your own repository\" runs\n%s\nbut %s runs\n%s", show(readme), walkthroughScript, show(script))
	}
	files := map[string]string{}
	for _, f := range a.Files {
		files[f.Name] = string(f.Data)
	}
	for name, text := range outputs {
		if files["readme/"+name] != text {
			t.Errorf("the README shows output %q as\n%s\nbut the script compares it with\n%s", name, text, files["readme/"+name])
		}
		if !strings.Contains(string(a.Comment), " $WORK/readme/"+name+"\n") {
			t.Errorf("the script does not compare an output with readme/%s", name)
		}
	}
	if len(outputs) == 0 {
		t.Error("no walkthrough-output blocks")
	}
}

func show(cmds [][]string) string {
	var b strings.Builder
	for _, c := range cmds {
		fmt.Fprintf(&b, "  %q\n", c)
	}
	return b.String()
}

// shellCommands parses a shell script and returns its simple commands in
// order, each as its words with its redirections ("> file") at the end,
// quotes removed and variables left as they are written.
func shellCommands(t testing.TB, script string) [][]string {
	t.Helper()
	f, err := syntax.NewParser().Parse(strings.NewReader(script), "")
	if err != nil {
		t.Fatalf("parsing %q: %v", script, err)
	}
	cfg := &expand.Config{Env: expand.FuncEnviron(func(name string) string { return "$" + name })}
	literal := func(w *syntax.Word) string {
		s, err := expand.Literal(cfg, w)
		if err != nil {
			t.Fatalf("expanding a word of %q: %v", script, err)
		}
		return s
	}
	var cmds [][]string
	syntax.Walk(f, func(n syntax.Node) bool {
		st, ok := n.(*syntax.Stmt)
		if !ok {
			return true
		}
		call, ok := st.Cmd.(*syntax.CallExpr)
		if !ok {
			return true
		}
		var words []string
		for _, w := range call.Args {
			words = append(words, literal(w))
		}
		for _, r := range st.Redirs {
			words = append(words, r.Op.String(), literal(r.Word))
		}
		cmds = append(cmds, words)
		return false
	})
	return cmds
}

// The canary demo of examples/README.md, run as it is.

// checkCanaryDemo runs the demo's block with bash from the module root, in
// a process group of its own that is killed at the end, and then asks the
// daemon it started for the two runs: the bad change rolled back, the
// good one landed.
func checkCanaryDemo(t *testing.T, b block) {
	if testing.Short() {
		t.Skip("runs the canary demo: a daemon, six agents, six services, two canaries")
	}
	// The demo's programs are built by the block, without the race
	// detector: a race build of this test adds nothing but time.
	racecheck.SkipUnder(t, "runs programs built without the race detector")
	for _, tool := range []string{"bash", "git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	tmp := t.TempDir()
	result := filepath.Join(tmp, "runs.json")
	// What the block leaves running is asked for its record after it, and
	// stopped when bash exits, even if this test is no longer there to.
	script := "trap 'kill 0' EXIT\n" + b.text + "\ncfg canary history --daemon $DAEMON --format json > " + result + "\n"
	// Output goes to a file: the processes the block leaves running hold
	// it open after bash has exited.
	logFile, err := os.Create(filepath.Join(tmp, "demo.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp,
		"GIT_AUTHOR_NAME=Ann", "GIT_AUTHOR_EMAIL=ann@example.com", "GIT_COMMITTER_NAME=Ann", "GIT_COMMITTER_EMAIL=ann@example.com", "GIT_CONFIG_NOSYSTEM=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Every process of the block is in bash's process group.
	pgid := cmd.Process.Pid
	defer func() {
		syscall.Kill(-pgid, syscall.SIGKILL)
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("the demo's output:\n%s", out)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(4 * time.Minute):
		t.Fatal("the demo did not end in 4 minutes")
	}
	data, err := os.ReadFile(result)
	if err != nil {
		t.Fatalf("the canary runs: %v", err)
	}
	var runs []wire.Run
	if err := json.Unmarshal(data, &runs); err != nil {
		t.Fatalf("the canary runs: %v\n%s", err, data)
	}
	var statuses []string
	for _, r := range runs {
		statuses = append(statuses, r.Status)
	}
	if want := []string{"rolled_back", "landed"}; !slices.Equal(statuses, want) {
		t.Errorf("the demo's canary runs: %v, want %v", statuses, want)
	}
}

// copyDir copies the files of the directory src into dst, made if needed.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// startTestServer serves 200 to every request, for the load driver.
func startTestServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	return srv.URL
}
