// error: source/duplicate_name.thrift:4:19: S.a: declared twice
struct S {
  1: optional i32 a
  2: optional i64 a
}
