package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/wire"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrNotFound: no current config, revision or host by that name.
	ErrNotFound = errors.New("not found")
	// ErrOutOfOrder: an appended revision does not follow the latest one.
	ErrOutOfOrder = errors.New("revision out of order")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("store closed")
)

// ConfigVersion is one config as a revision set it: its data, or its
// deletion.
type ConfigVersion struct {
	Name     string `json:"name"`
	Revision int64  `json:"revision"`           // the revision that set it
	Commit   string `json:"commit"`             // the git commit of Revision
	Type     string `json:"type,omitempty"`     // the Thrift type of a compiled config; may be empty
	Compiled bool   `json:"compiled,omitempty"` // a compiled (JSON) config, not a raw one
	Deleted  bool   `json:"deleted,omitempty"`
	Data     []byte `json:"data,omitempty"`
}

// Revision is one published revision: the configs one commit changed,
// applied together.
type Revision struct {
	Number  int64           `json:"revision"`
	Commit  string          `json:"commit"`
	Time    time.Time       `json:"time"` // when it was published
	Configs []ConfigVersion `json:"configs"`
}

// Info returns the revision without the configs' data.
func (r *Revision) Info() RevisionInfo {
	info := RevisionInfo{Number: r.Number, Commit: r.Commit, Time: r.Time, Configs: make([]string, len(r.Configs))}
	for i, c := range r.Configs {
		info.Configs[i] = c.Name
	}
	return info
}

// RevisionInfo describes a revision: its number, commit, time and the names
// of the configs it changed. The zero RevisionInfo (Number 0) stands for
// "nothing published yet".
type RevisionInfo struct {
	Number  int64     `json:"revision"`
	Commit  string    `json:"commit"`
	Time    time.Time `json:"time"`
	Configs []string  `json:"configs"`
}

// Snapshot is the current data of a set of configs at one revision.
type Snapshot struct {
	Latest  RevisionInfo    // the latest revision when the snapshot was taken
	Configs []ConfigVersion // each as the revision that last set it left it, sorted by name
}

// Host is what an agent last reported about itself.
type Host struct {
	Name     string            `json:"host"`
	Labels   map[string]string `json:"labels"`
	Configs  []string          `json:"configs"`
	Applied  int64             `json:"applied"`
	LastSeen time.Time         `json:"last_seen"`
	// Metrics is where the host's application metrics are scraped.
	Metrics string `json:"metrics,omitempty"`
	// Overrides are the overrides the host's agent serves.
	Overrides []wire.AppliedOverride `json:"overrides,omitempty"`
}

// Match selects configs by name; a nil Match selects every config.
type Match func(name string) bool

// Names returns a Match for the given names; "*" among them matches every
// config.
func Names(names ...string) Match {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		if n == "*" {
			return nil
		}
		set[n] = true
	}
	return func(name string) bool { return set[name] }
}

// Store keeps published revisions durably. Implementations are safe for
// concurrent use; an embedded one is OpenBolt, and a clustered one (etcd)
// can implement the same interface.
type Store interface {
	// Append publishes r atomically: readers see all of it or none of it.
	// r.Number must be Latest().Number+1 (ErrOutOfOrder otherwise) and r
	// must hold at least one config, each named once; Append sets each
	// config's Revision and Commit to the revision's.
	Append(ctx context.Context, r *Revision) error
	// Latest describes the latest revision (the zero RevisionInfo when
	// nothing is published).
	Latest(ctx context.Context) (RevisionInfo, error)
	// Get returns the current data of a config; ErrNotFound if no
	// revision holds it or the last one to change it deleted it.
	Get(ctx context.Context, name string) (ConfigVersion, error)
	// Snapshot returns the current data of the configs m selects that
	// exist, and the latest revision, at one point in time.
	Snapshot(ctx context.Context, m Match) (Snapshot, error)
	// Revision returns revision n in full; ErrNotFound if it was not
	// published.
	Revision(ctx context.Context, n int64) (*Revision, error)
	// Since calls fn, in order, for every revision after from that changed
	// a config m selects, holding only the configs m selects. It stops at
	// the first error fn returns and returns it. Revisions appended while
	// Since runs may or may not be included.
	Since(ctx context.Context, from int64, m Match, fn func(*Revision) error) error
	// PutHosts records hosts, replacing earlier records of the same names.
	PutHosts(ctx context.Context, hosts []Host) error
	// Hosts returns every recorded host, sorted by name.
	Hosts(ctx context.Context) ([]Host, error)
	// PutOverride records o, replacing the override with its ID.
	PutOverride(ctx context.Context, o wire.Override) error
	// DeleteOverride removes the override id; removing one that is not
	// there is not an error.
	DeleteOverride(ctx context.Context, id string) error
	// Overrides returns every recorded override, sorted by ID.
	Overrides(ctx context.Context) ([]wire.Override, error)
	// PutRun records r, replacing the run with its ID.
	PutRun(ctx context.Context, r wire.Run) error
	// Runs returns every recorded run, sorted by ID.
	Runs(ctx context.Context) ([]wire.Run, error)
	// Close closes the store; later calls fail with ErrClosed.
	Close() error
}

// check validates r as the revision after latest and fills in its configs'
// Revision and Commit.
func (r *Revision) check(latest int64) error {
	if r.Number != latest+1 {
		return fmt.Errorf("appending revision %d: %w: latest is %d", r.Number, ErrOutOfOrder, latest)
	}
	if len(r.Configs) == 0 {
		return fmt.Errorf("appending revision %d: no configs", r.Number)
	}
	seen := make(map[string]bool, len(r.Configs))
	for i := range r.Configs {
		c := &r.Configs[i]
		if err := repo.CheckName(c.Name); err != nil {
			return fmt.Errorf("appending revision %d: %w", r.Number, err)
		}
		if seen[c.Name] {
			return fmt.Errorf("appending revision %d: config %q twice", r.Number, c.Name)
		}
		seen[c.Name] = true
		if c.Deleted && c.Data != nil {
			return fmt.Errorf("appending revision %d: deleted config %q has data", r.Number, c.Name)
		}
		c.Revision, c.Commit = r.Number, r.Commit
	}
	return nil
}

// filter returns r with only the configs m selects, or nil if there are
// none.
func (r *Revision) filter(m Match) *Revision {
	if m == nil {
		return r
	}
	out := *r
	out.Configs = nil
	for _, c := range r.Configs {
		if m(c.Name) {
			out.Configs = append(out.Configs, c)
		}
	}
	if out.Configs == nil {
		return nil
	}
	return &out
}
