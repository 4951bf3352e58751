// Package gate evaluates feature gates in-process: gates are configs (a Gate
// of @cfg//gate.thrift, compiled like any other config, reviewed, canaried
// and distributed), compiled once from their JSON into an evaluator and
// checked for a unit (a user, an account, a device) with no network call.
//
// It offers:
//
//   - Compile: a gate's JSON to a *Gate, checked as the schema's validators
//     check it, with the application's own restraints (Options.Restraints);
//   - Gate.Check: the decision for a Unit (an ID and typed attributes),
//     with the deciding rule, whether sampling decided, and, when the check
//     cannot decide, the reason (it then fails closed: Pass is false);
//   - Prepare and Gate.CheckPrepared: a unit prepared once for checking
//     many gates (its attributes found and versions parsed once), decided
//     exactly as Check decides it;
//   - Follow: a gate followed through the client library (package client),
//     swapped atomically on every version the agent delivers (commits,
//     canary overrides and their removal), read without locks, and kept
//     working from the agent's cache when everything upstream is down;
//   - Hash and Bucket: the sampling function;
//   - Sample: pass rates of a gate over synthetic units, per rule;
//   - CustomNames: the application's restraints a gate names, for tools
//     that stand in for them.
//
// # Evaluation
//
// A gate is an ordered list of rules; a rule is a conjunction of
// restraints, each possibly negated, and a percentage. The first rule whose
// restraints all hold decides: the unit passes with that percentage. When
// no rule holds, the unit does not pass. Built-in restraints are: the unit's
// ID in a set; a string attribute in a set; a boolean attribute being true
// (or false); a numeric attribute compared with a number; a
// semantic-version attribute compared with a version; the unit being in the
// first percent of another gate's population (by that gate's salt); and
// restraints the application registers by name. A restraint on an
// attribute the unit does not have does not hold.
//
// A check of a gate that has a sampling rule first hashes the unit's ID,
// before anything depends on it, so that the processor works on the hash
// while it goes on with the check. A check then finds the attributes the
// gate reads in one pass over the unit's, and evaluates every condition on
// them (attribute tests and comparisons), parsing a version attribute once;
// then each rule, in
// order, evaluates its other restraints cheapest first (unit IDs, then
// populations, and the application's restraints last) and stops at the
// first that does not hold. A rule that a condition evaluated already rules
// out is passed over without evaluating any other. A condition that several
// rules restrain by (the same unit IDs, attribute test, comparison or
// population, negated or not) is evaluated once per check, and each rule
// applies its own negation to it; an application's restraint is called by
// every rule that reaches it, and only when none of the rule's built-in
// restraints is false. (Gates reading more than 16 attributes, attributes
// of keys longer than 63 bytes, or more than 64 distinct conditions are
// evaluated alike, the attributes and conditions beyond those looked up and
// evaluated each time a rule reaches them.) A restraint
// that cannot be evaluated (an attribute of the wrong type, a version that
// does not parse, sampling without a unit ID, an application's restraint
// that fails or panics) makes its rule unknown, unless another of the
// rule's restraints does not hold; an unknown rule before the deciding one
// fails the check closed, with the reason.
//
// # Prepared units
//
// An application that checks many gates for one unit (every gate a page
// shows, for the user loading it) can prepare the unit once: Prepare(u),
// or Prepared.Reset(u) on a Prepared it keeps (per goroutine, say), which
// allocates nothing once its buffers have grown to the unit. Then
// Gate.CheckPrepared(p) and Live.CheckPrepared(p) decide exactly as
// Check(u): same decision, same rule, same reason, the application's
// restraints called as often. What is done once per unit is what does not
// depend on the gate: finding the attributes the gates read (each key a
// compiled gate reads is numbered once per process, and a prepared unit
// holds where each numbered key is in it) and parsing the string
// attributes under those keys as versions. What stays per gate is
// evaluating the conditions and the rules, and the hash (its state after
// the salt is the gate's, and the unit's ID is hashed after it).
//
// A gate compiled after the unit was prepared, reading keys no gate read
// before (a new version swapped in by Follow, say), is checked alike: a
// check looks up the keys the unit does not know in the unit, as Check
// does. The numbering of keys only grows; it is bounded to 1,024 keys
// (of up to 63 bytes, those with a slot), and the keys of gates compiled
// once it is full are looked up in the unit at every check. Compiling
// numbers keys under a lock; preparing and checking read the numbering
// without one (an atomic load of an immutable table). A Prepared is only
// read by checks: goroutines may check one concurrently, but not while it
// is Reset, and the unit's attributes must not change while it is in use.
//
// Preparing a unit costs about as much as half a check: it pays from
// about two checks of a unit on (README.md has the numbers). A single
// check is cheapest with Check.
//
// # Sampling
//
// A unit passes a rule of percentage p when its bucket is below p × 100.
// Its bucket is floor(h × 10000 / 2^32), where h is MurmurHash3 (x86_32,
// seed 0) of the UTF-8 bytes of the gate's salt immediately followed by
// those of the unit's ID, read as an unsigned 32-bit integer. So a
// unit's answer never changes while the gate does not; raising a
// percentage only adds units (a unit in at 1 % is in at 10 %); gates with
// different salts sample independently. Only integers are involved: the
// test is h × 10000 < p × 100 × 2^32, which needs 46 bits, exact in every
// language (JavaScript's doubles included).
//
// This agrees with flagd's fractional operation (flagd 0.15.0 and later,
// and the OpenFeature flagd providers of that release): a unit passes
// exactly when {"fractional": [{"cat": [SALT, {"var": "targetingKey"}]},
// ["on", P], ["off", 10000 - P]]} resolves to "on" for a targeting key
// equal to the unit's ID, with P = p × 100; that is, for a flagd flag
// whose key is the salt, {"fractional": [["on", P], ["off", 10000 - P]]}.
// testdata/sampling.json holds inputs and expected hashes and buckets for
// other runtimes.
package gate
