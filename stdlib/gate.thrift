// Gate decides, for a unit (a user, an account, a device, a request:
// whatever the application names with a string ID), whether a feature is on
// for it. A gate is an ordered list of rules; a rule is a conjunction of
// restraints and a pass percentage. The first rule whose restraints all hold
// for the unit decides: the unit passes with the rule's percentage,
// deterministically (the same unit always gets the same answer, and a unit in
// at 1 % stays in at 10 %). When no rule holds, the unit does not pass.
// A gate is itself a config: a .cconf exports a Gate, and applications check
// it in-process with the Go package gate (or through OpenFeature).
//
//   load("@cfg//gate.thrift", "Gate", "Rule", "Restraint", "Condition", ...)
//   load("@cfg//gate.cinc", "ramp", "attr_in", "version", ...)   # helpers
//
// Sampling: a unit passes a rule of percentage p when its bucket is below
// p * 100, where its bucket is floor(h * 10000 / 2^32) and h is the 32-bit
// MurmurHash3 (x86_32, seed 0) of the UTF-8 bytes of the gate's salt
// followed by the unit's ID. This is flagd's fractional bucketing.

// Op compares a unit's attribute (left) with a value (right).
enum Op {
  LT = 1, // attribute < value
  LE = 2, // attribute <= value
  EQ = 3, // attribute == value
  NE = 4, // attribute != value
  GE = 5, // attribute >= value
  GT = 6, // attribute > value
}

// AttrIn holds when the unit's string attribute attr is one of values
// (attr_equals is AttrIn with one value; attr_not_in is a negated AttrIn).
struct AttrIn {
  1: required string attr
  2: required set<string> values
}

// AttrIs holds when the unit's boolean attribute attr is value.
struct AttrIs {
  1: required string attr
  2: optional bool value = true
}

// NumberCompare holds when the unit's numeric attribute attr compares with
// value as op says.
struct NumberCompare {
  1: required string attr
  2: required Op op
  3: required double value
}

// VersionCompare holds when the unit's attribute attr, a semantic version
// (semver.org 2.0.0: MAJOR.MINOR.PATCH, an optional -PRERELEASE and
// +BUILD, and an optional leading "v"), compares with value as op says, by
// semantic-version precedence (build metadata is ignored).
struct VersionCompare {
  1: required string attr
  2: required Op op
  3: required string value
}

// Population holds for the units in the first percent of the population of
// the gate whose salt is salt: exactly the units that a rule of that gate
// with this percentage samples (when its restraints hold). A gate restrained
// by the population of another at 10 % reaches the same users as that
// gate's 10 %.
struct Population {
  1: required string salt
  2: required double percent
}

// Custom is a restraint that applications register by name (in Go, the
// gate.Options.Restraints of the application); params are handed to it
// when the gate is loaded. A gate naming a restraint an application has
// not registered does not load in that application.
struct Custom {
  1: required string name
  2: optional map<string, string> params = {}
}

// Condition is what a restraint tests.
union Condition {
  // The unit's ID is one of these.
  1: set<string> unit_ids
  2: AttrIn attr_in
  3: AttrIs attr_is
  4: NumberCompare number
  5: VersionCompare version
  6: Population population
  7: Custom custom
}

// Restraint is one condition of a rule, negated or not. A condition on an
// attribute the unit does not have does not hold (so, negated, it holds).
struct Restraint {
  1: required Condition condition
  2: optional bool negate = false
}

// Rule holds for a unit when all its restraints hold (a rule without
// restraints holds for every unit); the unit then passes with percent
// (0 to 100, in steps of 0.01).
struct Rule {
  // Shown in decisions: which rule decided.
  1: required string name
  2: optional list<Restraint> restraints = []
  3: required double percent
}

struct Gate {
  // Sampling is by salt: gates with different salts sample independently,
  // and changing the salt draws every sample again.
  1: required string salt
  2: required list<Rule> rules
  3: optional string description
}
