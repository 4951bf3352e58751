// error: source/forward_const.thrift:2:15: const A: got constant B, declared at line 3, want one declared before its use (as Thrift's compiler reads them)
const i32 A = B
const i32 B = 1
