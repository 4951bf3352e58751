// error: source/duplicate_id.thrift:4:3: S.b: field ID 1 is already used by "a"
struct S {
  1: optional i32 a
  1: optional i32 b
}
