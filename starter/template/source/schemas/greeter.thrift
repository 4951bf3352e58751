// Greeter is the config of a service that greets its callers
// (examples/app reads it).
struct Greeter {
  // What the service answers, before the caller's name.
  1: required string greeting
  // How many requests a second the service answers.
  2: optional double rate_per_sec = 5
}
