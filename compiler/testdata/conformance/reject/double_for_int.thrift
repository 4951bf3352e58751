// error: source/double_for_int.thrift:3:23: S.a: default: got double 1.5, want i32
struct S {
  1: optional i32 a = 1.5
}
