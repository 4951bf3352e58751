// error: source/python_keyword.thrift:3:19: got Python keyword "from", want the name of the field (Thrift's compiler refuses the keywords of Python)
struct S {
  1: optional i32 from
}
