// Package agent is the per-host agent (cfg agent): it fetches the configs
// the host's applications ask for from a distribution daemon, keeps them in
// an on-disk cache, subscribes to their updates, serves them to local
// applications, and reports what it applied.
//
// An Agent is embeddable: New(Config) then Serve(ctx, ln) serves the local
// API on ln until ctx is done. The local API (docs/api.md, "The agent's
// local API") mirrors the daemon's reads:
//
//	GET /v1/configs/{name}                 the config, as the daemon serves it
//	GET /v1/watch?configs=A,B[&from=REV]   NDJSON events from the agent's own state
//	GET /v1/status                         what the agent holds, JSON (Status)
//	GET /healthz                           200 "ok" whenever the agent serves
//
// Behaviour:
//
//   - First request: a config the agent does not hold is fetched with
//     GET /v1/configs/{name} from a daemon, written to the cache and added
//     to the subscription. Later requests are served from memory.
//   - Subscription: one watch stream (POST /v1/watch with the configs and
//     from=REV in the body; GET with a query string to a daemon that
//     answers 405) for every config subscribed to, restarted with from= the
//     applied revision when the set changes. Each update is written to the
//     cache (package cache) before memory, state.json last, then reported
//     with POST /v1/hosts/{host} (also at start and every
//     Config.ReportEvery). The applied revision also advances with the
//     daemon's heartbeats, whose revision is one the stream has sent every
//     update up to.
//   - Bounds: a local request names configs by the one rule of
//     config names (repo.CheckName), at most MaxWatchConfigs per watch; the
//     agent subscribes to at most MaxPending configs it holds no version
//     of, and to MaxSubscriptionBytes of names in all (503 beyond). A
//     config a daemon says does not exist is dropped from the
//     subscription Config.MissingGrace after a local client last named
//     it, unless a local watch stream names it.
//   - Failover and backoff: on a connection error, an HTTP error, a stream
//     that ends or silence longer than Config.HeartbeatTimeout, the agent
//     moves to the next daemon and resumes from its applied revision, at
//     once until it has tried every daemon; every other failure, and every
//     failure to write the cache (which retries the same daemon), is
//     followed by a wait: 200ms doubling to 10s until a stream applies an
//     event, with jitter. It retries forever, serving the cache meanwhile.
//   - Restart: New loads the cache, so a new agent serves what it held at
//     once, before any daemon answers, and resumes the watch from
//     state.json's revision. Damaged entries are removed, logged and
//     fetched again; a damaged state.json makes the agent resynchronise.
//   - Resynchronising: state.json records the identity of the daemons'
//     store whose revisions the agent holds. A daemon whose store is
//     another one (Cfg-Store), or whose latest revision is below the
//     agent's (Cfg-Latest-Revision: a store made again, or restored from an
//     older copy), is watched again from a snapshot, which the agent takes
//     as the whole truth whatever its revisions; it logs both steps and
//     ends its local watch streams. A store with no revision yet is waited
//     for, serving the cache.
//
// Within one store, a config's revision only ever increases in the agent:
// an update or a fetch that is not newer than the held version is ignored,
// so replays after a failover or a fetch ahead of the stream neither
// duplicate nor regress anything.
//
// The agent talks to its daemons through wire.Client (package wire owns
// the API in Go). Subpackages: cache (the on-disk layout, shared with the
// client library) and agenttest (the real daemon, over a git repository
// and a store in temporary directories, for tests).
package agent
