// Package synth generates synthetic config repositories for benchmarks.
//
// Generate(dir, Options{Configs, Modules, Seed}) writes, deterministically for
// the options:
//
//   - source/schemas/{common,job,cache,gate}.thrift: structs with i8, i16,
//     i32 and i64, string, double and bool fields, enums, nested structs,
//     list<Struct>, map<string, i32>, set<string>, optional fields, IDL
//     defaults (scalars, containers, enum constants) and constants; job.thrift
//     and cache.thrift include common.thrift. The root types are Job,
//     CacheConfig and GateConfig.
//   - a .thrift-cvalidator beside each schema, registering cheap checks with
//     add_validator; generated values pass them all.
//   - Modules modules source/lib/<kind>_<m>.cinc: util modules (m%5 == 0)
//     build resources, ports, limits and labels, and load their parent util
//     by a relative path (the utils form a binary tree); jobs (m%5 == 1, 2),
//     cache (3) and gates (4) modules load schemas and one util module and
//     export functions building values.
//   - Configs configs source/<team>/<dir>/<kind>_<i>.cconf, each loading one
//     to three modules (its kind's module, chosen with Zipf popularity; half
//     of them a util module; 15 % a second module of the kind, by an aliased
//     load), building a list of elements with a comprehension, setting a
//     free-text field by assignment, and calling export once.
//
// Compiled sizes follow a lognormal distribution fitted to the paper's
// (median 1 KB, p95 45 KB) and cut at 1 MiB, which gives a mean near 12 KB.
// Plan returns each config's predicted compiled size, which is exact for
// the typed compiler and for internal/baseline.
//
// The programs stay inside the language: keyword-only struct constructors
// with arguments in IDL field order, enum values (Priority.HIGH), sorted
// duplicate-free list literals for set fields, sorted dict literals for map
// fields, ints for some double fields. Every field with an IDL default is set
// explicitly, so an untyped run (internal/baseline) writes the same bytes as
// the typed compiler.
//
// ModuleUsers and ModuleWithUsers read a repository's load statements to find
// which configs depend on a module; with Configs = 10000 and default Modules,
// ModuleWithUsers(dir, 100) finds a module with about 100 users (seed 1:
// lib/jobs_027.cinc with 101), the one to edit in an incremental benchmark.
package synth
