// What the reference's grammar takes besides types and values:
// cpp_include, annotations wherever it takes them, cpp_type, xsd_attrs;
// and enum values given, implicit, and qualified by an include.
cpp_include "<vector>"
namespace py conformance.grammar (a = "on a namespace")

include "a/dup.thrift"

typedef i32 (on = "a base type") Count (on = "a typedef")

enum Implicit {
  ZERO (on = "an enum value"),
  ONE,
  FIVE = 5;
  SIX
} (after = "an enum")

struct Annotated {
  1: optional map cpp_type "std::map<int, int>" <i32, i32> (on = "a map type") m (on = "a field"),
  2: optional set cpp_type "std::set<int>" <i32> s,
  3: optional list<i32> cpp_type "std::vector<int>" l = {}
  4: optional i32 x xsd_optional xsd_nillable xsd_attrs { 1: i32 attr } (on = "a field")
  5: optional Implicit implicit = Implicit.SIX
  6: optional dup.Level level = dup.Level.HIGH
  7: optional Count count = 3
} (after = "a struct")

union Member {
  1: i32 a
} (after = "a union")

exception Failure {
  1: string message
} (after = "an exception")

service Annotations {
  void f(1: i32 a (on = "an argument")) throws (1: Failure failure (on = "an exception")) (on = "a function"),
} (after = "a service")
