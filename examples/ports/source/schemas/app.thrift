// App is the configuration of one application server.

namespace go ports

struct App {
  1: required string name
  2: required i32 port
  3: optional i32 workers = 8
  4: optional bool tls = true
}
