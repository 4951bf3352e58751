// Service is the deployment-wide configuration of one RPC service: where it
// runs, which backends it calls and how hard it may be called.

include "common.thrift"

namespace go servicecfg

enum LogLevel {
  DEBUG = 0,
  INFO = 1,
  WARN = 2,
  ERROR = 3,
}

typedef list<common.Endpoint> EndpointList

// Target says where a backend's requests go: exactly one of these.
union Target {
  // A single fixed endpoint.
  1: common.Endpoint endpoint
  // A name to resolve through service discovery.
  2: string discovery_name
  // A fixed pool of endpoints, load-balanced by the client.
  3: EndpointList pool
}

struct Backend {
  1: required string name
  2: required Target target
  3: optional common.Millis timeout_ms = common.DEFAULT_TIMEOUT_MS
  4: optional i8 max_retries = 2
  // Fraction of requests that may be retries.
  5: optional double retry_budget = 0.1
}

struct RateLimit {
  1: required i32 requests_per_second
  2: optional i32 burst = 0
}

struct Service {
  1: required string name
  2: required common.Region home_region
  // Every region the service runs in, home included.
  3: required list<common.Region> regions
  4: required list<Backend> backends
  // Per-caller limits; the key is the caller's service name, "*" for everyone else.
  5: optional map<string, RateLimit> rate_limits = {}
  // Custom error pages by HTTP status code.
  6: optional map<i32, string> error_pages = {}
  7: optional set<string> admins = []
  // SHA-256 of the TLS certificate clients must see, when pinned.
  8: optional binary tls_cert_pin
  9: optional LogLevel log_level = LogLevel.INFO
  10: optional map<string, string> labels = {}
  11: optional i64 max_request_bytes = 4194304
  12: optional common.Endpoint admin
}

// Callers without a rate limit of their own share this one.
const i32 DEFAULT_RPS = 1000

const map<string, string> STANDARD_LABELS = {
  "managed-by": "cfg",
}
