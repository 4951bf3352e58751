// Package wire owns the distribution API (docs/api.md) in Go: its JSON
// bodies and headers (Event, Config, Override, Run, Host, ...), as the
// daemon, the agent and the client library write and read them; the watch
// stream's EventReader and EventWriter; and Client, the typed client of
// the daemon's API, with config names escaped once (ConfigPath).
package wire

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// Event is one line of a watch stream: a "snapshot", an "update", a
// "heartbeat" or "overrides".
type Event struct {
	Type     string `json:"type"`
	Revision int64  `json:"revision"`
	// Store is the identity of the store the revision numbers belong to
	// (HeaderStore); the daemon sets it in every event, and an agent in
	// every event of its local API.
	Store   string   `json:"store,omitempty"`
	Commit  string   `json:"commit,omitempty"`
	Configs []Config `json:"configs,omitempty"`
	// Overrides, in an "overrides" event, is every override in effect for
	// the watching host among the watched configs (possibly none).
	Overrides []Override `json:"overrides,omitempty"`
	// Unreachable, in a heartbeat, says why the daemon cannot reach its
	// store now (a daemon over etcd cut off from it): other daemons of the
	// store may have published revisions this one has not seen.
	Unreachable string `json:"unreachable,omitempty"`
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
	// Override and OverrideVersion name the override an agent serves
	// instead of the revision's data, if any (the agent's local API).
	Override        string `json:"override,omitempty"`
	OverrideVersion int64  `json:"override_version,omitempty"`
}

// WatchRequest is the body of POST /v1/watch: the parameters of
// GET /v1/watch as JSON, so that a watch of many configs does not depend
// on how long a URL may be.
type WatchRequest struct {
	Configs []string `json:"configs"`
	// From is the revision to resume after; nil for a snapshot.
	From *int64 `json:"from,omitempty"`
	// Host is the watching agent's host name, for its overrides.
	Host string `json:"host,omitempty"`
}

// Revision is a published revision, as GET /v1/revisions/{n} and GET
// /v1/revisions/latest answer it.
type Revision struct {
	Number int64  `json:"revision"`
	Commit string `json:"commit"`
	// Time is when the daemon published the revision.
	Time time.Time `json:"time"`
	// Configs are the names of the configs the revision changed.
	Configs []string `json:"configs"`
}

// HostReport is the body of POST /v1/hosts/{host}.
type HostReport struct {
	Labels  map[string]string `json:"labels"`
	Configs []string          `json:"configs"`
	Applied int64             `json:"applied"`
	// Metrics is where the host's application metrics are scraped
	// (Prometheus text exposition), for canaries.
	Metrics string `json:"metrics,omitempty"`
	// Overrides are the overrides the agent serves.
	Overrides []AppliedOverride `json:"overrides,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

// ErrorMessage reads an error response (at most 64 KiB of its body) and
// returns its message: the Error body's, or else the body's text, or else
// the status.
func ErrorMessage(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e Error
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	if msg := strings.TrimSpace(string(body)); msg != "" {
		return msg
	}
	return resp.Status
}

// Headers of the daemon's responses. Every response carries HeaderStore
// and HeaderLatestRevision; GET /v1/configs/{name} the others too.
const (
	// HeaderStore is the identity of the daemon's store: revision
	// numbers of one store mean nothing in another, so a client holding
	// revisions of another store resynchronises from a snapshot.
	HeaderStore          = "Cfg-Store"
	HeaderRevision       = "Cfg-Revision"
	HeaderLatestRevision = "Cfg-Latest-Revision"
	HeaderCommit         = "Cfg-Commit"
	HeaderType           = "Cfg-Type"
	// HeaderOverride is set by an agent serving an override: ID/VERSION.
	HeaderOverride = "Cfg-Override"
)

// Overrides is the type of the watch event that lists the overrides in
// effect for the watching host (GET /v1/watch?host=NAME).
const Overrides = "overrides"

// Override is a temporary replacement of a config's data for some hosts,
// held under a lease: a canary pushes its candidate this way. The daemon
// removes an override when it is deleted or its lease runs out.
type Override struct {
	// ID names the override (the canary run that made it).
	ID     string `json:"id"`
	Config string `json:"config"`
	// Hosts are the hosts the override applies to; watch events leave it
	// out.
	Hosts []string `json:"hosts,omitempty"`
	// Version counts the changes made to the override (its hosts or data);
	// the daemon sets it.
	Version  int64  `json:"version"`
	Type     string `json:"type,omitempty"`
	Compiled bool   `json:"compiled"`
	Data     []byte `json:"data"`
	// LeaseSeconds is how long the override lives unless renewed: set by
	// the writer (1 to 3600).
	LeaseSeconds int `json:"lease_seconds"`
	// Expires is when the lease runs out; the daemon sets it.
	Expires time.Time `json:"expires"`
}

// AppliedOverride is an override an agent serves: which one, for which
// config, at which version.
type AppliedOverride struct {
	ID      string `json:"id"`
	Config  string `json:"config"`
	Version int64  `json:"version"`
}

// Run is a canary run as the daemon records it (PUT /v1/canaries/{id}).
type Run struct {
	ID     string `json:"id"`
	Config string `json:"config"`
	// Spec names the spec config the run follows.
	Spec string `json:"spec"`
	// Status is RunRunning until the run ends. RunAbandoned is not
	// recorded: the daemon lists a running run whose lease has run out as
	// abandoned, ended when its lease ran out.
	Status  string    `json:"status"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	// LeaseSeconds is, while the run is running, how long it is taken to
	// go on unless its writer records it again (1 to 3600; 0: until it
	// ends); Expires is when that runs out, and the daemon sets it.
	LeaseSeconds int       `json:"lease_seconds,omitempty"`
	Expires      time.Time `json:"expires,omitzero"`
	// Base is the revision of the config the run started from; Commit is
	// the commit that landed the change, if it did; RevertCommit the
	// commit that undid it, if its bake failed.
	Base         int64  `json:"base"`
	Commit       string `json:"commit,omitempty"`
	RevertCommit string `json:"revert_commit,omitempty"`
	// Candidate is the hex SHA-256 of the candidate's data: a candidate
	// that a run landed and reverted is not tried again by default.
	Candidate string `json:"candidate,omitempty"`
	// Report is the run's report (cfg canary --format json).
	Report json.RawMessage `json:"report,omitempty"`
}

// Run statuses.
const (
	RunRunning    = "running"
	RunLanded     = "landed"
	RunRolledBack = "rolled_back"
	RunAbandoned  = "abandoned"
	RunReverted   = "reverted" // landed, then reverted when its bake failed
	RunFailed     = "failed"   // ended by an error
)

// Host is what an agent last reported about itself, as GET /v1/hosts
// lists it.
type Host struct {
	Name     string            `json:"host"`
	Labels   map[string]string `json:"labels"`
	Configs  []string          `json:"configs"`
	Applied  int64             `json:"applied"`
	LastSeen time.Time         `json:"last_seen"`
	// Metrics is where the host's application metrics are scraped.
	Metrics string `json:"metrics,omitempty"`
	// Overrides are the overrides the host's agent serves.
	Overrides []AppliedOverride `json:"overrides,omitempty"`
}
