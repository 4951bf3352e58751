// error: source/enum_const_value.thrift:3:13: const X: got 5, want a value of enum E
enum E { A = 1 }
const E X = 5
