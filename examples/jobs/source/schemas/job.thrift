// Job describes a service job as the cluster scheduler sees it: who owns it,
// how urgent it is, and what it needs from a machine. This is the example from
// "Holistic Configuration Management at Facebook" (SOSP 2015, figure 2).

namespace go jobs

enum Priority {
  LOW = 0,
  MEDIUM = 1,
  HIGH = 2,
}

// Resources is what one task of a job reserves on its host.
struct Resources {
  1: required i32 cpu_millis
  2: required i32 memory_mb
  // Scratch disk; most jobs need none.
  3: optional i32 disk_mb
}

struct Job {
  1: required string name
  2: required string owner
  3: optional Priority priority = Priority.MEDIUM
  4: required Resources resources
  5: optional list<string> tags = []
  6: optional i16 port = 8080
  // Relative share of the scheduler's attention among jobs of equal priority.
  7: optional double weight = 1.0
  8: optional i32 replicas = 1
  // Free-form pager rotation to escalate to; unset means the owner's default.
  9: optional string oncall
  10: optional string description
}

// The largest memory reservation a single task may make.
const i32 MAX_MEMORY_MB = 65536
