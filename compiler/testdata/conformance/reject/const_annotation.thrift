// error: source/const_annotation.thrift:2:17: got "(", want a definition (const, typedef, enum, struct, union, exception or service)
const i32 C = 1 (on = "a constant")
