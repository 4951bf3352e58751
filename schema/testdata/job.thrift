include "common.thrift"

namespace go job

enum Priority {
  LOW = 1,
  HIGH = 2
}

typedef i64 UserId
typedef common.Endpoint Ep

const i32 DEFAULT_PORT = 8080
const list<string> TAGS = ["a", "b"]
const map<string, i32> LIMITS = {"qps": 10}
const common.Endpoint LOCAL = {"host": "localhost", "port": DEFAULT_PORT}

struct Resources {
  1: required i32 cpu_millis
  2: optional i64 memory_mb = 512
}

union Target {
  1: string host
  2: common.Endpoint endpoint
}

exception Oops {
  1: optional string message
}

struct Job {
  1: required string name
  2: optional Priority priority = Priority.HIGH
  3: optional Resources resources
  4: optional list<Target> targets
  5: optional set<string> tags = TAGS
  6: optional map<string, i32> limits = LIMITS
  7: optional UserId owner_id
  8: optional Ep ep = LOCAL
  9: double ratio = 1
  10: optional binary blob
}
