// error: source/python_keyword_function.thrift:3:8: got Python keyword "def", want the name of the function (Thrift's compiler refuses the keywords of Python)
service S {
  void def()
}
