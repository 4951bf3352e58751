// Package client is what applications link in to read their configs
// through the host's agent (cfg agent).
//
//	c, err := client.New(client.Options{
//		AgentURL: "http://127.0.0.1:7481",
//		CacheDir: "/var/cache/cfg", // the agent's --cache-dir
//	})
//	cfg, err := c.Get(ctx, "feed/cache_job")       // the bytes and their revision
//	err = c.Decode(ctx, "feed/cache_job", &job)     // JSON into a struct
//	go c.Watch(ctx, "feed/cache_job", func(cfg client.Config) { ... }) // now and on every change
//
// The client offers:
//
//   - Get: GET /v1/configs/{name} on the agent, which fetches a config on
//     its first request and serves it from memory afterwards. ErrNotFound
//     for a config that does not exist.
//   - Decode: Get, then json.Unmarshal of the data (compiled configs are
//     canonical JSON); Config.Decode does the same for a value in hand.
//   - Watch: the current value, then every newer version in revision
//     order, through the agent's local watch stream; it reconnects and
//     resumes after the last revision delivered, and stops when the
//     context is done. When the agent's revisions become those of another
//     store (the daemons' store was made again), or its current version
//     has a lower revision than the one delivered (the store was restored
//     from an older copy), Watch delivers the agent's current version
//     whatever its revision, and logs it (Options.Logger).
//   - Fallback: when the agent does not answer, Get reads the agent's
//     on-disk cache directly (layout in package agent/cache) and sets
//     Config.FromCache; Watch reads the cache every Options.PollInterval
//     until the agent is back. Applications keep running on the last
//     configs they had when everything upstream is down.
package client
