// error: source/syntax.thrift:3:21: got ",", want a type
struct S {
  1: optional i32 a,,
}
