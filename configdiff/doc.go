// Package configdiff compares compiled configs with materialized configs, for
// review: which configs were added, removed or changed, and in a changed
// config which fields, computed on values rather than on text.
//
// A compiled config's JSON is decoded on both sides and walked with go-cmp:
// each difference is reported with its field path inside the value
// (resources.memory_mb, tags[2], ports["http"]) and the old and new values.
// Struct fields come in the order of the document (the IDL order), list
// elements by index, added and removed elements found by an edit script.
// A raw config is compared line by line; a binary one (not UTF-8 text) is
// only reported as changed.
package configdiff
