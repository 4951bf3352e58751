package compiler

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/cfg-dev/cfg/repo"
)

// The compile cache lives in .cfg/compile-cache.gob. It records the state
// of every source file (so unchanged files need not be read) and, for every
// config compiled successfully, the key of its inputs and the size and
// modification time of the materialized file written. A config whose key
// and materialized file are unchanged is up to date. A cache that is
// missing, corrupt or written by another build of cfg is ignored: the
// compile is then a full one, never a wrong one. The file is the gob
// encoding followed by its CRC-32C (4 bytes, little endian), so that a
// damaged cache that still decodes (a flipped bit in a dependency's path
// or a key) is not taken for a good one.
const cacheFile = "compile-cache.gob"

// cacheCRC is the table of the cache file's checksum.
var cacheCRC = crc32.MakeTable(crc32.Castagnoli)

type cacheData struct {
	Identity string                 `json:"identity"`
	Files    map[string]fileState   `json:"files"`
	Outputs  map[string]outputState `json:"outputs"`
}

// outputState describes a materialized file as the compile that wrote it
// left it.
type outputState struct {
	Type    string `json:"type"` // the exported Thrift type of a compiled config
	Key     string `json:"key"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime"`
}

var identity = sync.OnceValue(func() string {
	// The identity of this build of cfg: the module version and VCS
	// revision when known, and otherwise the executable's path, size and
	// modification time (a rebuilt cfg is a new file; reading and hashing
	// tens of megabytes on every compile would cost more than a no-op
	// compile itself).
	id := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		id = bi.Main.Path + "@" + bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
				id += " " + s.Value
			}
		}
		if bi.Main.Version != "(devel)" && bi.Main.Version != "" {
			return id
		}
	}
	if exe, err := os.Executable(); err == nil {
		if fi, err := os.Stat(exe); err == nil {
			id += fmt.Sprintf(" %s %d %d", exe, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return id
})

// cachePath is the cache's path in the repository.
const cachePath = repo.CacheDir + "/" + cacheFile

func emptyCache() *cacheData {
	return &cacheData{Identity: identity(), Files: map[string]fileState{}, Outputs: map[string]outputState{}}
}

// loadCache reads the cache, or returns an empty one.
func loadCache(r *repo.Repo) *cacheData {
	data, err := r.ReadCacheFile(cacheFile)
	if err != nil || len(data) < 4 {
		return emptyCache()
	}
	data, sum := data[:len(data)-4], data[len(data)-4:]
	if binary.LittleEndian.Uint32(sum) != crc32.Checksum(data, cacheCRC) {
		return emptyCache()
	}
	var c cacheData
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&c); err != nil || c.Identity != identity() || c.Files == nil || c.Outputs == nil {
		return emptyCache()
	}
	return &c
}

// sameAs reports whether saving c would write what prev holds.
func (c *cacheData) sameAs(prev *cacheData) bool {
	return c.Identity == prev.Identity &&
		maps.EqualFunc(c.Files, prev.Files, func(a, b fileState) bool {
			return a.Size == b.Size && a.ModTime == b.ModTime && a.Hash == b.Hash && slices.Equal(a.Deps, b.Deps)
		}) &&
		maps.Equal(c.Outputs, prev.Outputs)
}

func (c *cacheData) save(r *repo.Repo) error {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(c); err != nil {
		return err
	}
	return r.WriteCacheFile(cacheFile, binary.LittleEndian.AppendUint32(b.Bytes(), crc32.Checksum(b.Bytes(), cacheCRC)))
}

// statOutput returns the size and modification time of a materialized file.
func statOutput(fsys fs.FS, p string) (outputState, bool) {
	fi, err := fs.Stat(fsys, p)
	if err != nil {
		return outputState{}, false
	}
	return outputState{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}, true
}
