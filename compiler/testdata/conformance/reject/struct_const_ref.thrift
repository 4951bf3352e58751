// error: source/struct_const_ref.thrift:5:21: S.p: default: got constant ORIGIN of struct type P, want a value (Thrift's compiler takes none here)
struct P { 1: optional i32 x }
const P ORIGIN = {"x": 0}
struct S {
  1: optional P p = ORIGIN
}
