// error: source/enum_range.thrift:3:3: E.A: got 2147483648, want a value in the range of i32 (-2147483648..2147483647)
enum E {
  A = 2147483648
}
