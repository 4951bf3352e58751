// error: source/enum_overflow.thrift:4:3: E.B: the value after 2147483647 overflows i32
enum E {
  A = 2147483647,
  B
}
