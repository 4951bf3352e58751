// Package daemon is the distribution daemon (cfg serve): it tails a branch
// of a config repository, publishes each new commit that changes
// materialized configs as one revision in a durable store, and serves the
// HTTP API of docs/api.md to agents and tools.
//
// It offers:
//
//   - Config and New: a daemon for a repository (a work tree or a bare
//     mirror), a branch and a data directory holding the store, or a
//     store opened elsewhere (Config.Store), possibly shared with other
//     daemons (SharedStore, below);
//   - Daemon.Serve: the tailer (started by the first call) and the HTTP
//     API on a listener, until a context is done;
//   - Daemon.Handler: the HTTP API alone, to mount elsewhere;
//   - Daemon.Close: stops the tailer, ends watch streams, saves host
//     reports and closes the store.
//
// The tailer reads the branch head at start, whenever a file system
// notification says the repository's refs changed (the git directory and
// the branch's refs/heads directory are watched with fsnotify) and every
// Config.Poll. It publishes one revision per first-parent commit after the
// latest revision's commit that changed files under materialized_configs/
// (added, modified or deleted), in commit order; the first revision of an
// empty store holds every materialized file at the head. Compiled configs
// (x.json) are named without .json and served as application/json; raw
// configs keep their extension; the other encodings of compiled configs
// (.thrift-binary, .thrift-compact) are not distributed. If the branch is
// rewritten so that it no longer holds the latest revision's commit, one
// revision brings every config to its state at the new head. A restart
// resumes from the store: nothing is published twice and nothing is
// skipped. The Thrift type of a compiled config comes from the record the
// compile commits beside the outputs (repo.TypesFile), read at the
// revision's commit.
//
// The store (package store) is DataDir/cfg.db, with its identity recorded
// in DataDir/cfg.db.identity. New refuses a store that fails its checks
// (store.DamagedError): damaged, missing while its identity is recorded,
// or another store's. Every response carries the store's identity
// (Cfg-Store) and latest revision (Cfg-Latest-Revision), and every watch
// event the identity, so that clients holding revisions of another store
// resynchronise. /healthz is 503 while publishing fails and after a read
// of the store failed its checks.
//
// Watch streams subscribe to a hub before reading the store, so the
// snapshot or replay and the live updates join without gaps or
// duplicates. Publishing adds each revision to the hub's ring, which every
// stream reads at its own position, and wakes the streams, without
// blocking; a stream that falls more than Config.WatchBuffer revisions or
// Config.WatchQueueBytes of config data behind is closed, and its client
// resumes with from=.
//
// The daemon never holds a revision whole. The first revision is read
// from git a file at a time and written to the store as it is read; a
// revision whose configs hold more than 4 MiB of data goes through the
// hub without them, and each stream reads the configs it watches from the
// store, a batch at a time, as it writes them. Smaller revisions (a commit
// that changes a few configs) go through the hub with their data, written
// to every stream from memory. Publishing a revision costs what the commit
// changed: the tailer compares only the git trees whose hashes differ, and
// reads the compile's record of types again only when its file changed.
//
// A stream takes its connection over from net/http and runs in a
// goroutine of its own once its request has ended, so that it holds about
// 10 KiB while it waits: through net/http's ResponseWriter it held 27 KiB
// (net/http's buffers of its connection and request, and two goroutines),
// and 5,000 streams took the daemon above 300 MB in the soak (README). It
// frames its chunks with httputil.NewChunkedWriter and its headers with
// http.Header.Write, and a small goroutine of its own notices its client
// leaving (as net/http's read of an idle connection does); Close waits
// for these streams. It assembles its events config by config in a buffer
// of 32 KiB (never an event whole, never the data of a config it shares
// with other streams copied) and writes each piece as one chunk with a
// write deadline of its own (Config.WriteTimeout), so that a client that
// takes in nothing is dropped and one that reads slowly but steadily is
// not. Serve bounds what each connection's socket may hold unsent to 32
// KiB (TCP_NOTSENT_LOWAT on Linux and macOS): a write then waits until the
// client has taken in about a piece, not a third of a send buffer of
// megabytes, and a client that takes in nothing pins that much kernel
// memory beyond its own receive window. A stream cut in the middle of an
// event (a failed write or read of the store), or ended by its client
// leaving or the daemon shutting down, ends without the last chunk of its
// body, so that its client cannot take half an event for a whole stream.
// Where a connection cannot be taken over (HTTP/1.0), the stream writes
// through the ResponseWriter and http.ResponseController the same way.
//
// What clients can make the daemon hold is bounded (docs/api.md, Limits):
// connections (Config.MaxConnections, below the file descriptor limit less
// ReservedFDs), watch streams in all and per remote address (503 with
// Retry-After above them), the time to read a request or its headers, the
// size of its headers and body, idle connections, and the backlog of a
// stream.
//
// Host reports are kept in memory and written to the store every few
// seconds and on Close, so that GET /v1/hosts survives a restart.
//
// # Clusters
//
// Config.Store hands the daemon a store opened elsewhere, which it does
// not close. A SharedStore (store.Etcd, cfg serve --etcd) makes it one
// of several daemons sharing the store. Each follows the revisions
// published (SharedStore.Follow: one etcd watch) and feeds its hub from
// them, the revisions it publishes itself included: one way to the watch
// streams, with the configs of each revision read once per daemon (the
// publisher hands its own over without reading them). Each campaigns to
// publish (SharedStore.Lead); the one elected tails the branch from the
// store's latest commit, and campaigns again when it loses the
// leadership. With a store of its own, the tailer feeds the hub
// directly, as it publishes. Overrides are followed from the store too
// (SharedStore.FollowOverrides), a change through the daemon answered
// once it serves it; expiry removes an override from what each daemon
// serves, and the store's lease removes it from the store. GET /v1/hosts
// merges the hosts the store holds, reported to any daemon, with the
// daemon's own reports not saved yet.
package daemon
