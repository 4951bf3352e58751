// Package store keeps the revisions the distribution daemon publishes,
// durably and atomically.
//
// It offers:
//
//   - Store: the interface the daemon uses (Append, Latest, Get, Snapshot,
//     Revision, Since, PutHosts, Hosts, Close), small enough for a
//     clustered backend (etcd) to implement later;
//   - OpenBolt: the embedded Store, one bbolt file in the daemon's data
//     directory, one write transaction (synced to disk) per revision;
//   - Revision, ConfigVersion, RevisionInfo, Snapshot and Host: what is
//     stored;
//   - Match and Names: which configs a Snapshot or Since selects;
//   - ErrNotFound, ErrOutOfOrder and ErrClosed, for errors.Is.
//
// Revisions are numbered 1, 2, 3, … with no gaps: Append accepts only the
// number after the latest. A revision holds the configs one commit changed
// (their new data, or their deletion); the store also keeps the current
// version of every config that exists, so reading one does not replay
// history.
//
// The bolt file has four buckets: "revisions" (big-endian revision number →
// the revision as JSON), "configs" (name → current version), "meta" (the
// latest revision, whose commit is the last one published) and "hosts"
// (host name → what the host last reported).
package store
