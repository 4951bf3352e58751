// Firewall is the packet filter in front of a tier of hosts.

namespace go ports

enum Protocol {
  TCP = 6,
  UDP = 17,
}

enum Action {
  ALLOW = 1,
  DENY = 2,
}

struct Rule {
  1: required Action action
  2: required Protocol protocol
  3: required i32 port
  // Source networks in CIDR form; empty means anywhere.
  4: optional list<string> from_cidrs = []
  5: optional string comment
}

struct Firewall {
  1: required string tier
  2: required list<Rule> rules
  // What happens to packets no rule matches.
  3: optional Action default_action = Action.DENY
}
