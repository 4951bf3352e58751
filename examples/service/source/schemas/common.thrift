// Types shared by every service schema.

namespace go common

// Milliseconds.
typedef i64 Millis

// A DNS name or an IP address literal.
typedef string Hostname

enum Region {
  US_EAST = 1,
  US_WEST = 2,
  EU_CENTRAL = 3,
  AP_SOUTH = 4,
}

// Endpoint is one host:port to connect to.
struct Endpoint {
  1: required Hostname host
  2: required i16 port
  3: optional bool tls = false
}

const Millis DEFAULT_TIMEOUT_MS = 1500
const i16 DEFAULT_ADMIN_PORT = 9990
