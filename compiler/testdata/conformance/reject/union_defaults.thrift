// error: source/union_defaults.thrift:5:3: U.c: a second default in union U ("a" has one); a union takes at most one
union U {
  1: i32 a = 1
  2: string b
  3: i32 c = 2
}
