package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
)

// Limits of config names.
const (
	MaxNameLen    = 1024 // bytes in a config name
	MaxElementLen = 200  // bytes in one slash-separated element (file names get suffixes such as ".thrift-compact")
)

// CheckName reports whether name can be the name of a config: one to
// MaxNameLen bytes of slash-separated elements, each 1 to MaxElementLen
// bytes of ASCII letters, digits and the characters . _ - + @, not starting
// with a dot. So a name has no spaces, tabs, newlines or other control
// characters, no commas (which separate names in a watch), no backslashes,
// and no "." or ".." elements; it is the same on every file system and
// needs no quoting in a URL, a shell or a log line.
//
// It is the one rule for config names: the compiler refuses a source whose
// name breaks it, and the daemon, the agent and the client refuse such
// names too.
func CheckName(name string) error {
	if name == "" {
		return errors.New("empty config name")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("config name %.40q...: longer than %d bytes", name, MaxNameLen)
	}
	for el := range strings.SplitSeq(name, "/") {
		switch {
		case el == "":
			return fmt.Errorf("config name %q: empty element (want slash-separated names)", name)
		case strings.HasPrefix(el, "."):
			return fmt.Errorf("config name %q: element %q starts with a dot", name, el)
		case len(el) > MaxElementLen:
			return fmt.Errorf("config name %.40q...: element longer than %d bytes", name, MaxElementLen)
		}
		for _, c := range el {
			if c >= 0x80 || !nameChar(byte(c)) {
				return fmt.Errorf("config name %q: character %q not allowed (want ASCII letters, digits and . _ - + @)", name, c)
			}
		}
	}
	return nil
}

func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-' || c == '+' || c == '@'
}

// encodedExts are the extensions of the Thrift encodings of compiled
// configs (see EncodedPath); no raw config may end with one.
var encodedExts = []string{"." + EncodingThriftBinary, "." + EncodingThriftCompact}

// CheckSource reports whether the config or raw config at source path p
// (relative to the root of the repository in fsys) can be compiled: it is
// a regular file, not a link; its name obeys CheckName; and it collides
// with no other source: two sources may not share a name or a materialized
// file (a raw config "a/b" or "a/b.json" beside a config source/a/b.cconf),
// no raw config may be named like a Thrift encoding ("x.thrift-binary"),
// and no config may be named like a directory of another ("a" beside
// "a/b.txt"), since an agent's cache holds configs as files named after
// them. Both sources of a collision are refused, each naming the other, so
// that compiling either one finds it.
func CheckSource(fsys fs.FS, p string) error { return NewSourceChecker(fsys).Check(p) }

// A SourceChecker applies CheckSource to the sources of one repository. It
// lists the sources (Scan) once, at its first Check, so it sees them as
// they were then. It is safe for concurrent use.
type SourceChecker struct {
	fsys fs.FS
	once sync.Once
	err  error
	// Of the sources: the config names of configs and of raw configs, and
	// every directory above a name, each with one source under it.
	configs, raws, dirs map[string]string
}

// NewSourceChecker returns a SourceChecker for the repository in fsys.
func NewSourceChecker(fsys fs.FS) *SourceChecker { return &SourceChecker{fsys: fsys} }

func (c *SourceChecker) scan() {
	tree, err := Scan(c.fsys)
	if err != nil {
		c.err = err
		return
	}
	c.configs, c.raws, c.dirs = map[string]string{}, map[string]string{}, map[string]string{}
	for _, l := range []struct {
		paths []string
		names map[string]string
	}{{tree.Configs, c.configs}, {tree.Raw, c.raws}} {
		for _, p := range l.paths {
			name := ConfigName(p)
			l.names[name] = p
			for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
				if _, ok := c.dirs[dir]; !ok {
					c.dirs[dir] = p
				}
			}
		}
	}
}

// Check is CheckSource.
func (c *SourceChecker) Check(p string) error {
	if _, err := fs.Stat(c.fsys, p); err != nil {
		// A link, a pipe or a device is reported at p like a link: what
		// it is, without p again.
		var le *LinkError
		switch {
		case errors.As(err, &le) && le.Path == p:
			return errors.New(le.Problem())
		case errors.Is(err, ErrNotRegular):
			return ErrNotRegular
		}
		return err
	}
	name := ConfigName(p)
	if err := CheckName(name); err != nil {
		return err
	}
	c.once.Do(c.scan)
	if c.err != nil {
		return c.err
	}
	switch Classify(p) {
	case Raw:
		if other, ok := c.configs[name]; ok {
			return fmt.Errorf("config name %q: also the name of the config %s", name, other)
		}
		for _, ext := range encodedExts {
			if strings.HasSuffix(name, ext) {
				return fmt.Errorf("raw config %q: names ending in %s are reserved for configs in that encoding", name, ext)
			}
		}
		if stem, ok := strings.CutSuffix(name, ".json"); ok {
			if other, ok := c.configs[stem]; ok {
				return fmt.Errorf("raw config %q: materialized at %s, like the config %s", name, MaterializedPath(p), other)
			}
		}
	case Config:
		if other, ok := c.raws[name]; ok {
			return fmt.Errorf("config name %q: also the name of the raw config %s", name, other)
		}
		if other, ok := c.raws[name+".json"]; ok {
			return fmt.Errorf("config %q: materialized at %s, like the raw config %s", name, MaterializedPath(p), other)
		}
		if other, ok := c.dirs[name]; ok {
			return fmt.Errorf("config name %q: also a directory of configs (%s); a config name cannot be a directory of another", name, other)
		}
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if other, ok := c.configs[dir]; ok {
			return fmt.Errorf("config name %q: %q is also a config (%s); a config name cannot be a directory of another", name, dir, other)
		}
	}
	return nil
}
