// Package stdlib holds the schemas that ship with cfg, with their
// validators. Config programs load them with the "@cfg//" prefix:
//
//	load("@cfg//canary.thrift", "CanarySpec", "Phase", "Targets", "Check")
//
// It offers canary.thrift (the CanarySpec of cfg canary) and
// canary.thrift-cvalidator (durations positive, percentages within range,
// at least one phase and one check).
package stdlib

import "embed"

// FS holds the shipped files at its root.
//
//go:embed canary.thrift canary.thrift-cvalidator
var FS embed.FS

// Prefix is the repository path under which the compiler offers FS, and
// LoadPrefix how load() spells it.
const (
	Prefix     = "@cfg"
	LoadPrefix = "@cfg//"
)
