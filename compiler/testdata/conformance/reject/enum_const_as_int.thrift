// error: source/enum_const_as_int.thrift:4:15: const Y: got constant X of enum type E, want i32
enum E { A = 1 }
const E X = 1
const i32 Y = X
