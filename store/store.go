package store

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
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
	// ErrDamaged: the store's file, or a value read from it, is damaged:
	// it fails a structural check or its checksum. Nothing damaged is
	// ever returned as data.
	ErrDamaged = errors.New("store damaged")
	// ErrCompacted: the revisions asked for were compacted (Compact): a
	// client behind them starts again from a snapshot.
	ErrCompacted = errors.New("revisions compacted")
	// ErrRunEnded: a running run does not replace one that ended.
	ErrRunEnded = errors.New("run ended")
	// ErrRetired: an override's ID was retired when it was removed
	// (DeleteOverride), and cannot be set again for a while.
	ErrRetired = errors.New("id retired")
)

// compactBatch is the most changes one write transaction of a Compact
// goes through.
const compactBatch = 100

// ConfigVersion is one config as a revision set it: its data, or its
// deletion.
type ConfigVersion struct {
	Name     string
	Revision int64  // the revision that set it
	Commit   string // the git commit of Revision
	Type     string // the Thrift type of a compiled config; may be empty
	Compiled bool   // a compiled (JSON) config, not a raw one
	Deleted  bool
	Data     []byte
}

// Revision describes a published revision: its number, the git commit it
// publishes, when it was published and how many configs it changed. The
// zero Revision (Number 0) stands for "nothing published yet".
type Revision struct {
	Number  int64
	Commit  string
	Time    time.Time
	Configs int // how many configs the revision changed
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
func Names(names ...string) Match { return Select(names...).Match() }

// Selection names the configs a Snapshot or Since reads: every config, or
// a set of names. The zero Selection selects nothing.
type Selection struct {
	all   bool
	names []string // sorted, without duplicates
}

// All selects every config.
func All() Selection { return Selection{all: true} }

// Select selects the given names; "*" among them selects every config.
func Select(names ...string) Selection {
	if slices.Contains(names, "*") {
		return All()
	}
	s := slices.Clone(names)
	slices.Sort(s)
	return Selection{names: slices.Compact(s)}
}

// IsAll reports whether s selects every config.
func (s Selection) IsAll() bool { return s.all }

// Names returns the names s selects, sorted; nil if it selects every config.
func (s Selection) Names() []string { return s.names }

// Match returns s as a Match (nil when s selects every config).
func (s Selection) Match() Match {
	if s.all {
		return nil
	}
	return func(name string) bool {
		_, ok := slices.BinarySearch(s.names, name)
		return ok
	}
}

// Entries yields cs, for Append.
func Entries(cs []ConfigVersion) iter.Seq2[ConfigVersion, error] {
	return func(yield func(ConfigVersion, error) bool) {
		for _, c := range cs {
			if !yield(c, nil) {
				return
			}
		}
	}
}

// Store keeps published revisions durably. Implementations are safe for
// concurrent use. OpenBolt is the embedded one; the package documentation
// gives the layout, which a clustered (etcd) store can share.
//
// Reads cost what they return: Latest and Revision read one small record,
// Get one entry, Snapshot one entry per selected config, Since the entries
// of the selected configs after a revision. None of them reads a revision
// whole, and a revision is never written or held whole either.
type Store interface {
	// Identity returns the store's identity: created once with the store
	// and never changed, so that a client can tell a store from another
	// one, or from a new one at the same place.
	Identity() string
	// Append publishes revision r.Number holding the configs that configs
	// yields, atomically: readers see all of it or none of it. r.Number
	// must be Latest().Number+1 (ErrOutOfOrder otherwise), at least one
	// config is needed, and each config may come once; the configs'
	// Revision and Commit are set from r, and r.Configs is ignored. If
	// configs yields an error, Append publishes nothing and returns it.
	Append(ctx context.Context, r Revision, configs iter.Seq2[ConfigVersion, error]) error
	// Latest describes the latest revision (the zero Revision when
	// nothing is published).
	Latest(ctx context.Context) (Revision, error)
	// Revision describes revision n; ErrNotFound if it was not published.
	Revision(ctx context.Context, n int64) (Revision, error)
	// Changed calls fn, in name order, with the name of every config
	// revision n changed; ErrNotFound if it was not published.
	Changed(ctx context.Context, n int64, fn func(name string) error) error
	// Get returns the current data of a config; ErrNotFound if no
	// revision holds it or the last one to change it deleted it.
	Get(ctx context.Context, name string) (ConfigVersion, error)
	// Snapshot calls fn, in name order, with the current data of every
	// config sel selects that exists, all as of one revision, which it
	// returns. It stops at the first error fn returns and returns it.
	Snapshot(ctx context.Context, sel Selection, fn func(ConfigVersion) error) (Revision, error)
	// Since calls fn, in order of revision and then name, with every
	// change to a config sel selects in the revisions after from (a
	// deletion has Deleted set). It stops at the first error fn returns
	// and returns it. Revisions appended while Since runs may or may not
	// be included, but a revision is included whole or not at all.
	Since(ctx context.Context, from int64, sel Selection, fn func(ConfigVersion) error) error
	// Compact drops the history older than the keep latest revisions
	// (keep at least 1): the revisions up to Latest-keep (the floor) lose
	// their changes, so that Changed of them and Since from before the
	// floor fail with ErrCompacted, and their entries that a later one
	// up to the floor superseded, or that are deletions. Every config's
	// current entry stays, and Latest, Revision, Get and Snapshot are as
	// before. Compact returns the floor; it never lowers it. A Compact
	// cut short is finished by the next one.
	Compact(ctx context.Context, keep int64) (floor int64, err error)
	// PutHosts records hosts, replacing earlier records of the same
	// names; each record expires ttl after it is put (ttl must be
	// positive), and Hosts omits it from then on.
	PutHosts(ctx context.Context, hosts []Host, ttl time.Duration) error
	// Hosts returns every recorded host that has not expired, sorted by
	// name.
	Hosts(ctx context.Context) ([]Host, error)
	// PutOverride records o, replacing the override with its ID; it
	// fails with ErrRetired, and records nothing, while o's ID is
	// retired (DeleteOverride).
	PutOverride(ctx context.Context, o wire.Override) error
	// RenewOverride sets the Expires of the override id to expires
	// without writing its data again; ErrNotFound if there is none.
	RenewOverride(ctx context.Context, id string, expires time.Time) error
	// DeleteOverride removes the override id; removing one that is not
	// there is not an error. Unless retire is zero, it also retires the
	// ID until retire, in the same write: until then a PutOverride of id
	// fails with ErrRetired, so that a request to set the override that
	// was held up on its way past the removal does not set it again.
	// Retiring an ID again moves its end to the new retire.
	DeleteOverride(ctx context.Context, id string, retire time.Time) error
	// Overrides returns every recorded override, sorted by ID.
	Overrides(ctx context.Context) ([]wire.Override, error)
	// PutRun records r, replacing the run with its ID; a running r does
	// not replace a run that ended (ErrRunEnded), so that a late renewal
	// of a run cannot undo the record of its end.
	PutRun(ctx context.Context, r wire.Run) error
	// Runs returns every recorded run, sorted by ID.
	Runs(ctx context.Context) ([]wire.Run, error)
	// DamagedReads counts the reads that failed because what they read
	// was damaged (ErrDamaged) since the store was opened.
	DamagedReads() int64
	// Close closes the store; later calls fail with ErrClosed.
	Close() error
}

// hostRecord is the stored record of a Host: the host, and when the
// record expires.
type hostRecord struct {
	Host
	Expires time.Time `json:"expires"`
}

// checkTTL validates the ttl of a PutHosts.
func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("storing hosts: ttl %v, want more than 0", ttl)
	}
	return nil
}

// liveHosts returns the hosts of rs that have not expired at now. A
// record without an expiry, stored before records had one (or migrated
// from the first layout), does not expire until the host is recorded
// again.
func liveHosts(rs []hostRecord, now time.Time) []Host {
	out := make([]Host, 0, len(rs))
	for _, r := range rs {
		if r.Expires.IsZero() || r.Expires.After(now) {
			out = append(out, r.Host)
		}
	}
	return out
}

// checkConfig validates c as a config of revision n.
func checkConfig(n int64, c *ConfigVersion) error {
	if err := repo.CheckName(c.Name); err != nil {
		return fmt.Errorf("appending revision %d: %w", n, err)
	}
	if c.Deleted && c.Data != nil {
		return fmt.Errorf("appending revision %d: deleted config %q has data", n, c.Name)
	}
	return nil
}
