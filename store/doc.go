// Package store keeps the revisions the distribution daemon publishes,
// durably and atomically, in a layout whose reads cost what they return.
//
// It offers:
//
//   - Store: the interface the daemon uses: Identity, Append, Latest,
//     Revision, Changed, Get, Snapshot, Since, Compact, hosts (whose
//     records expire), overrides (renewed by RenewOverride), runs,
//     DamagedReads and Close;
//   - OpenBolt: the embedded Store, one bbolt file in the daemon's data
//     directory, with its identity recorded beside it and a log of the
//     revisions it commits (below); CheckBolt, the check of such a file
//     that OpenBolt runs at every start;
//   - OpenEtcd: the clustered Store, the same layout under a key prefix of
//     an etcd cluster, which several daemons share; its Follow (the
//     revisions as they are published, through one etcd watch),
//     FollowOverrides (the overrides as they change) and Lead (the
//     election of the one daemon that publishes);
//   - ConfigVersion, Revision and Host: what is stored;
//   - Selection (All, Select) and Match: which configs a Snapshot or Since
//     reads; Entries, the configs of an Append from a slice;
//   - ErrNotFound, ErrOutOfOrder, ErrClosed, ErrDamaged, ErrCompacted
//     and ErrLeadershipLost, for errors.Is, and DamagedError, OpenBolt's
//     refusal of a store.
//
// The package storetest is the conformance suite every Store passes.
//
// Revisions are numbered 1, 2, 3, … with no gaps: Append accepts only the
// number after the latest. A revision holds the configs one commit changed
// (their new data, or their deletion).
//
// # Identity
//
// Every store has an identity, 32 hex digits drawn at random when the
// store is created and never changed. The daemon sends it with every
// response and event, so that an agent or client holding revisions of one
// store notices when it talks to another (or to the same place after the
// store was made again) and resynchronises instead of waiting for a
// revision number the new store may never reach. OpenBolt records the
// identity in PATH.identity beside the store's file, and refuses to start
// when the file is missing or empty while that record exists, or when the
// file holds another identity: a store that disappeared is never silently
// made again as revision 1.
//
// # Layout
//
// The store is a set of keys and values, grouped below by the bbolt
// bucket that holds them; a key-value store without buckets (etcd) uses
// the bucket name and a slash as a key prefix. Revision numbers in keys
// are 8 bytes big endian, so that byte order is numeric order; NAME is a
// config name, which never holds a zero byte.
//
//	meta/identity           the store's identity
//	meta/layout             "2": the version of this layout
//	meta/compacted          the revision the history starts after, once compacted (Compact)
//	revs/REV                the revision's record: commit, time published, number of configs
//	history/NAME 0x00 REV   the config as revision REV set it: flags (compiled, deleted), commit, type, data
//	changes/REV NAME        empty: revision REV changed config NAME
//	hosts/HOST              JSON of Host, with "expires": when the record expires
//	overrides/ID            JSON of wire.Override
//	retired-overrides/ID    when the retirement of override ID ends (DeleteOverride), RFC 3339
//	runs/ID                 JSON of wire.Run
//
// Every value ends with a CRC-32C of its key and the rest of the value,
// checked on every read: a value that fails it is an ErrDamaged error,
// counted by DamagedReads, and never returned as data.
//
// Reads return copies of the data, which the caller owns and must not
// change: the data of an entry of 4 KiB or more is copied once and that
// copy returned to every read of the entry for as long as any caller holds
// it (entries never change once visible), so that a hundred readers of a
// 5 MB config hold 5 MB between them. Each read still checks the value in
// the file.
//
// The latest revision is the last key under revs/. A revision is visible
// once its record is: every read first finds the latest revision and
// reads nothing after it. So a config's current version is its newest
// history entry not after the latest revision (one seek, in bbolt a Seek
// past it and a step back; in etcd a range read of history/NAME in
// descending order, limited to one key); a snapshot of N configs reads N
// entries, and later transactions of the same snapshot read as of the
// same revision, since entries never change once visible; Since with
// named configs reads each one's history after a revision, and with every
// config reads changes/ after it and the entries it names. Nothing holds
// the list of every config, and nothing reads a revision whole. Snapshot
// and Since read in batches of at most 256 entries or about 1 MiB of data,
// each in its own read transaction, and call back between transactions,
// letting go of each entry as they hand it over: a caller that takes its
// time (a watch stream writing to a slow client) holds no transaction
// open and keeps at most one batch alive.
//
// Append writes a revision without building it whole: entry by entry,
// in one write transaction, or, when its data adds up to more than 16
// MiB, in several, whose entries readers do not see until the last one
// adds the record. An Append that fails or is cut short leaves entries
// after the latest revision, which the next Append removes (found through
// changes/). The etcd store does the same, with conditions on every
// transaction that keep revisions dense and whole whatever crashes or
// competes (below).
//
// # The log
//
// A bbolt transaction is durable after two fdatasyncs (its pages, then its
// meta page). So that a revision is durable after one, the bolt store
// commits a revision of at most 4 MiB of config data (a commit that
// changed a few configs: every revision but the first, as a rule) to a
// log, PATH.wal: one record holding the revision's number, its revs/ value
// and each config's name and history/ value, framed by its length and a
// CRC-32C of the store's identity, the length and the rest, written and
// synced with one fdatasync. Append returns then; the revision is written
// to the bolt file in the background, in the same write transaction as
// above. Latest answers with the latest revision of the log while the
// file lacks it, and every other call that reads revisions (Revision,
// Changed, Get, Snapshot, Since, Compact) first waits until the file holds
// every revision of the log, so reads never lag behind Append, and the
// next Append need not wait for the file. A revision above
// 4 MiB is written to the file directly, after the logged ones. Logged
// revisions wait in memory until they are in the file, at most 16 MiB of
// config data: an Append above it waits.
//
// Once the file holds every revision of the log, the length of the log's
// first record is overwritten with zero (not synced), and the next record
// is written at the start of the log, over the old ones: the log is
// neither truncated nor, once as big as the records it held at once,
// extended, so that a record's fdatasync flushes its bytes and no file
// size. A store closed, or a daemon stopped, therefore leaves a log that
// holds no record. At every
// start OpenBolt reads the log from its start up to the first record cut
// short or failing its checksum (a crash while writing it: that Append
// did not return), skips the revisions the file holds (old records after
// the last written), and writes the next ones to the file, in order. A
// record of a revision past the next one ends the log too: the file was
// restored from an older copy of the store, which never had the
// revisions between (a record that continues the file is of the same
// history, as revisions are numbered densely in a store, and is written
// to it). A crash at any point
// therefore leaves every revision whose Append returned, and one whose
// Append did not return whole or not at all. A log left beside a new
// store (the file and its identity record moved aside) is not read: its
// checksums are of another identity.
//
// # Compaction
//
// Compact(keep) drops the history older than the keep latest revisions.
// The floor, Latest-keep, is recorded first, in meta/compacted, in a
// transaction of its own; then Compact goes through the changes of the
// revisions up to the floor (changes/), a batch at a time, removing each
// change and, of its entry, the entry itself if a later one not after the
// floor supersedes it, or else (the entry is current as of the floor)
// every earlier entry of the config, and the entry too if it is a
// deletion. So every config's current entry stays, and a config deleted
// before the floor goes whole. The records of revs/ stay: Revision of a
// compacted revision still answers. Every read of Snapshot, Since and
// Changed reads the floor in the transaction it reads entries or an index
// in, and fails with ErrCompacted if it could miss what the compaction
// removes: Since from before the floor, Changed of a revision up to it, a
// Snapshot whose revision the floor passed while it ran. A compacted
// entry is therefore never taken for damage, nor silently left out. The
// floor never goes down, and a Compact cut short is finished by the next
// one, which starts from the first change left.
//
// # Hosts and overrides
//
// PutHosts records hosts with a ttl: each record holds when it expires,
// and Hosts leaves out the expired ones (a record without one, stored
// before records expired, stays until the host is recorded again). The
// bolt store keeps an expired
// record in its file until the host is recorded again (one record per
// host ever recorded); the etcd store puts each PutHosts's records under
// one etcd lease of the ttl, and etcd removes them when it ends.
// RenewOverride sets an override's Expires without writing its data
// again: the bolt store rewrites the record in place; the etcd store
// keeps the lease (below).
//
// # Checks
//
// bbolt reads its file through a memory map, so a page the file lacks (a
// truncated file) or a damaged page would fault or panic, killing the
// process. OpenBolt first reads the meta pages with ReadAt and checks that
// the file holds every page they count; after bbolt opens the file,
// CheckBolt reads every page of every tree and the freelist with ReadAt
// (types, bounds, key order, each page used once, every page used or
// free) and checks every value's checksum. Reading the whole file once
// costs about what reading it from disk costs (the README gives the
// measure). Every read and write after that runs with the runtime's
// panic-on-fault set, so that damage done to the file while it is open is
// an ErrDamaged error too, never a signal.
//
// # etcd
//
// OpenEtcd keeps the layout above under a key prefix (PREFIX, say
// "/cfg/"): the key of bucket/KEY is PREFIX + "bucket/" + KEY, and every
// value is sealed under KEY alone, as in the bolt file, so that the values
// of both stores are the same bytes. Besides, under PREFIX:
//
//	meta/append             the claim of the Append in progress: its revision and a random id
//	chunks/NAME 0x00 REV I  chunk I (4 bytes big endian) of an entry kept in chunks
//	publisher/LEASE         the candidates of the publisher election (concurrency.Election)
//	overrides-renewed/ID    when override ID expires, as its last renewal set it, under its lease
//
// etcd refuses a request of more than --max-request-bytes (1.5 MiB by
// default) and a transaction of more than --max-txn-ops operations (128);
// the store keeps below both: a write transaction holds at most 120
// operations and about 1 MiB, a read transaction at most 32 entries. A
// history entry of more than 256 KiB is kept in chunks of 256 KiB: its
// history value then holds the format 2, the number of chunks and the
// entry's size, each chunk is sealed under its own key, and the entry
// they make up is sealed as any other, so a chunk lost, moved or changed
// is an ErrDamaged error.
//
// An Append takes at least three transactions. The first claims the
// revision: it succeeds only if revs/REV-1 exists and revs/REV does not,
// and records the Append's own claim in meta/append, ending any other
// Append's. The Append then removes what earlier Appends of REV left
// (changes/REV... and the entries and chunks they name), writes its
// entries (each config's change before its entry, so that whatever was
// written is found through changes/), and adds revs/REV in a last
// transaction, which also removes the claim. Each of these transactions
// succeeds only if meta/append still holds the Append's claim, and the
// last only if revs/REV does not exist: of two publishers racing for a
// revision, at most one makes it visible, it holds only its own
// configs, and the other gets ErrOutOfOrder. Revisions are removed only by
// Compact (above): etcd's compaction (--auto-compaction-retention) drops
// the old versions of keys, not the revisions of this layout, and
// reclaims the space of what Compact removed.
//
// Snapshot of every config lists the keys of history/ (without values), a
// page of 1,024 at a time, and picks each name's newest key not after the
// latest revision; the entries whose keys follow one another (no other
// key between them: the usual case, a config with one entry) are read by
// one range read, limited to their number, the others by their exact key,
// and a name whose keys go on past the end of a page by its newest entry,
// the next page starting after its keys. Since of every config reads
// changes/ a page of 1,024 at a time, and each entry by its exact key.
// Both read the entries in transactions of at most 32, and keep up to two
// such transactions in flight, the next one sent while the caller is
// handed the entries of the one before: besides the entries kept in
// chunks among them, a Snapshot or Since holds at most 2 × 32 values of
// at most 256 KiB (16 MiB), typically a few hundred KiB. A range read that finds other keys among
// those it wants (the entries of an Append in progress, added after the
// listing) skips them and reads the wanted keys its limit left out by
// their exact keys. Reads are linearizable, and every value read is
// checked as in the bolt file.
//
// Follow gives the revisions as they are published through one watch of
// revs/; a watch that cannot go on (the etcd revision it resumes from was
// compacted, the member lost its leader) is replaced by one range read of
// the revisions missed and a new watch from the etcd revision of that
// read. Lead elects the publisher with concurrency.Election under an etcd
// lease. Overrides live under an etcd lease that ends a minute after their
// Expires, so that overrides no daemon is left to expire go too; a
// PutOverride moves the override to a new lease and revokes the old one.
// RenewOverride reads the key to find its lease, and renews it with one
// keep-alive when the renewal is for as long as the lease was granted
// (the same lease seconds, the usual case); otherwise it moves the key to
// a new lease with a put that keeps its value (ignore_value) and revokes
// the old lease. Either way the data is not written again: the renewal
// records the new Expires in overrides-renewed/ID, under the override's
// lease, which Overrides reads with the overrides (the bucket's name
// sorts just before "overrides/": one range read, and one watch for
// FollowOverrides, which reads the overrides again after each batch of
// changes, so that a renewal on one daemon reaches the others). A
// retired override ID (DeleteOverride) is a key under a lease of its own,
// which ends with the retirement: PutOverride puts the override only if
// that key does not exist, and DeleteOverride removes the override and
// puts the key, each in one transaction.
// A store's identity lives in meta/identity only: a cluster whose prefix
// was emptied gets a new store, with a new identity, which agents notice.
//
// Files of the first layout (each revision one JSON value under
// "revisions", without identity) are migrated by OpenBolt, in place: the
// revisions are copied one at a time into the new buckets, then one
// transaction switches the layout. A migration cut short starts again.
package store
