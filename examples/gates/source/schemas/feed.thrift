// Feed configures feedsvc, the feature gates example's service: how many
// items a page holds and how long each ranker works on a request.

struct Feed {
  // Items per page.
  1: required i32 page_size
  // Simulated work per request, in milliseconds, of the classic ranker and
  // of the new one; each request works this long times a random factor in
  // [0.5, 1.5).
  2: optional i32 classic_work_ms = 2
  3: optional i32 new_work_ms = 3
  // A request whose work would take longer than this is stopped after
  // timeout_ms and fails with 503.
  4: optional i32 timeout_ms = 50
}
