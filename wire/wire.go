// Package wire holds the JSON bodies and headers of the distribution API
// (docs/api.md), as the daemon, the agent and the client library write and
// read them.
package wire

// Event is one line of a watch stream: a "snapshot", an "update" or a
// "heartbeat".
type Event struct {
	Type     string   `json:"type"`
	Revision int64    `json:"revision"`
	Commit   string   `json:"commit,omitempty"`
	Configs  []Config `json:"configs,omitempty"`
}

// Event types.
const (
	Snapshot  = "snapshot"
	Update    = "update"
	Heartbeat = "heartbeat"
)

// Config is one config inside an Event.
type Config struct {
	Name     string `json:"name"`
	Revision int64  `json:"revision"`
	// Commit is the git commit of Revision; a snapshot mixes revisions, so
	// each config carries its own.
	Commit string `json:"commit,omitempty"`
	Type   string `json:"type,omitempty"`
	// Compiled tells a compiled (JSON) config from a raw one, when the
	// sender says; the daemon's and the agent's events always do.
	Compiled *bool  `json:"compiled,omitempty"`
	Deleted  bool   `json:"deleted,omitempty"`
	Data     []byte `json:"data,omitempty"`
}

// HostReport is the body of POST /v1/hosts/{host}.
type HostReport struct {
	Labels  map[string]string `json:"labels"`
	Configs []string          `json:"configs"`
	Applied int64             `json:"applied"`
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

// Headers of GET /v1/configs/{name}.
const (
	HeaderRevision       = "Cfg-Revision"
	HeaderLatestRevision = "Cfg-Latest-Revision"
	HeaderCommit         = "Cfg-Commit"
	HeaderType           = "Cfg-Type"
)
