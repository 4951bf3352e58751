// error: source/bad_default.thrift:3:23: S.a: default: got string "one", want i32
struct S {
  1: optional i32 a = "one"
}
