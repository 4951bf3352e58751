// Package stdlib holds the schemas that ship with cfg, with their
// validators and helper modules. Config programs load them with the
// "@cfg//" prefix:
//
//	load("@cfg//canary.thrift", "CanarySpec", "Phase", "Targets", "Check")
//	load("@cfg//gate.cinc", "ramp", "attr_in", "version")
//
// It offers:
//
//   - canary.thrift, the CanarySpec of cfg canary, and
//     canary.thrift-cvalidator (durations positive, percentages within
//     range, at least one phase and one check);
//   - gate.thrift, the Gate of feature gates (package gate), and
//     gate.thrift-cvalidator (a salt, named rules, percentages in [0, 100]
//     in steps of 0.01, no rule after one that holds for every unit,
//     semantic versions that parse, restraint names);
//   - gate.cinc, helpers that build gates: ramp (the typical ramp in one
//     call), rule, gate, the restraints unit_ids, attr_in, attr_equals,
//     attr_not_in, attr_is, number, version, population, custom,
//     custom_restraint, and negate.
package stdlib

import "embed"

// FS holds the shipped files at its root.
//
//go:embed canary.thrift canary.thrift-cvalidator gate.thrift gate.thrift-cvalidator gate.cinc
var FS embed.FS

// Prefix is the repository path under which the compiler offers FS, and
// LoadPrefix how load() spells it.
const (
	Prefix     = "@cfg"
	LoadPrefix = "@cfg//"
)
