// Package daemon is the distribution daemon (cfg serve): it tails a branch
// of a config repository, publishes each new commit that changes
// materialized configs as one revision in a durable store, and serves the
// HTTP API of docs/api.md to agents and tools.
//
// It offers:
//
//   - Config and New: a daemon for a repository (a work tree or a bare
//     mirror), a branch and a data directory holding the store;
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
// duplicates. Publishing hands each revision to every stream's buffered
// channel without blocking; a stream that falls more than
// Config.WatchBuffer revisions behind is closed, and its client resumes
// with from=.
//
// Host reports are kept in memory and written to the store every few
// seconds and on Close, so that GET /v1/hosts survives a restart.
package daemon
