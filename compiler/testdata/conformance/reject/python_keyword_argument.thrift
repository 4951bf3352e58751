// error: source/python_keyword_argument.thrift:3:17: got Python keyword "print", want the name of the field (Thrift's compiler refuses the keywords of Python)
service S {
  void f(1: i32 print)
}
