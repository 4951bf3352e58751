// error: source/unqualified_enum.thrift:4:21: S.e: default: got A, want E.A (Thrift's compiler takes no unqualified enum value)
enum E { A = 1 }
struct S {
  1: optional E e = A
}
