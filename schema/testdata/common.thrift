struct Endpoint {
  1: required string host
  2: optional i32 port
}
