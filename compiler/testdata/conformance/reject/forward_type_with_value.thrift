// error: source/forward_type_with_value.thrift:3:15: got type E, declared at line 5, want one declared before its use with a value (as Thrift's compiler reads them)
struct A {
  1: optional E e = E.X
}
enum E { X }
