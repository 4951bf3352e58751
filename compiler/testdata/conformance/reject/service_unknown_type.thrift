// error: source/service_unknown_type.thrift:3:13: unknown type "Missing"
service S {
  void f(1: Missing m)
}
