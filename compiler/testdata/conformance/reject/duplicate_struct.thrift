// error: source/duplicate_struct.thrift:3:1: "S" is already declared at line 2
struct S {}
struct S {}
