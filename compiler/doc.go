// Package compiler compiles config programs: Starlark (go.starlark.net)
// against Thrift schemas, into canonical JSON.
//
// # Files
//
// A .cconf file is a config program and exports one config; a .cinc file is
// a module other files load; a .thrift file is a schema; a
// .thrift-cvalidator file holds the checks for the types of the .thrift file
// of the same name. Paths given to load() are "//dir/file" (relative to
// source/) or relative to the loading file. Only .thrift and .cinc files can
// be loaded. Load cycles are found statically, before anything runs, and
// reported with the cycle.
//
// # Builtins
//
// Besides the Starlark universe (print, fail, len, range, sorted, ...):
//
//   - export(value): in a .cconf only, called exactly once; value must be a
//     Thrift struct value. Required fields are checked here, throughout the
//     value, and every missing one is reported.
//   - add_validator(Type, fn): in a .thrift-cvalidator only; registers fn as
//     a check of every value of the struct Type (declared in the schema
//     beside the validator) anywhere inside an exported config. A check
//     fails by calling fail(msg); all failures are reported.
//
// load() of a .thrift file offers its declarations by name:
//
//   - a struct, union or exception is a constructor taking keyword arguments
//     only: Job(name="cache", priority=Priority.HIGH). Fields with IDL
//     defaults start with them; a union takes exactly one member. Passing
//     None leaves a field unset. Reading an unset field gives None.
//     Assigning a field (job.name = "x") checks the value like the
//     constructor; assigning a union member replaces the previous one.
//   - an enum is a namespace of its values: Priority.HIGH, whose .name and
//     .value are the item's name and number. Values of one enum compare by
//     number.
//   - a typedef of a struct or enum is that type; a typedef of another type
//     is a function that checks and converts its argument: UserId(42).
//   - a constant is its value.
//
// # Type checking
//
// Every field value is checked when it is set: integer ranges (i8 to i64),
// element types of lists, sets and maps, nested structs and enums. These
// conversions are made and no others: a list or tuple (or set) for a set
// field, an int for a double, a dict for a map, a string for binary. A
// string is never a number, an int never an enum, a dict never a struct.
// Values are checked once more when exported, so a list changed after it
// was set (job.tags.append(3)) is caught too.
//
// Values built by a module are frozen when the module finishes loading:
// configs that load them cannot change them, and every module is executed
// once per run and shared.
//
// # Hermetic execution
//
// Programs see no files, network, clock or randomness; each program (a
// config, a module, or one config's validator checks) runs under a step
// limit (Options.MaxSteps), each config with its modules and validators
// under a time limit (Options.Timeout, DefaultTimeout), and the compile
// under a limit on its live heap (Options.MaxMemory, DefaultMaxMemory):
// when the heap passes it, the configs running are stopped and compiled
// again one at a time, so that a config fails only for its own memory. A
// config stopped by a limit fails with a diagnostic naming it and the
// limit; the others still compile. print() writes to the compile's stderr.
// Same inputs, same bytes and diagnostics out, whatever the number of
// workers.
//
// Source files hold no NUL byte, and Starlark sources are UTF-8; a string
// value (of a Thrift string) must be UTF-8 text, and binary holds bytes.
//
// # Snapshots
//
// With Options.Snapshot, Build reads every source file once, compiles those
// bytes, and returns them with the materialized files it left in a
// Snapshot: an fs.FS of the repository as compiled, for validating and
// committing exactly what was compiled while the files on disk change.
//
// # Canonical JSON
//
// A struct is an object with fields in IDL declaration order; unset fields
// are omitted and fields with IDL defaults are present unless set to None.
// An enum is its name; i64 is an exact integer; a double is the shortest
// form that round-trips (NaN and infinities are errors, -0.0 is 0.0);
// binary is base64. A set is an array without duplicates and a map an object, in the
// one canonical order of Thrift values (bool false first; numbers and enums
// by value; strings and binary bytewise; structs field by field in field ID
// order; lists, sets and maps element by element), which the Thrift
// encodings share. Map keys are strings, enum names or decimal integers;
// other key types are errors. Values nest at most MaxDepth deep, structs
// and containers counted, in every encoding. Output uses two-space
// indentation, UTF-8 without HTML escaping, and ends with a newline.
package compiler
