// Demo configures demosvc, the canary demo's service: what it answers and
// how long it works on each request.

struct Demo {
  // The body of a successful response.
  1: required string greeting
  // Simulated work per request, in milliseconds; each request works this
  // long times a random factor in [0.5, 1.5).
  2: required i32 work_ms
  // A request whose work would take longer than this is stopped after
  // timeout_ms and fails with 503.
  3: required i32 timeout_ms
  // Once the service has run this config for this many seconds, every
  // request fails with 503 (0: never). It stands for the failures that
  // show only after a while: a cache that expires, a pool that drains, a
  // leak that runs out of memory.
  4: optional i32 fail_after_seconds = 0
}
