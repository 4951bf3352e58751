// error: source/unknown_type.thrift:3:15: unknown type "Missing"
struct S {
  1: optional Missing m
}
