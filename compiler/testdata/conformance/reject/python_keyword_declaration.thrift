// error: source/python_keyword_declaration.thrift:2:13: got Python keyword "pass", want the name of the typedef (Thrift's compiler refuses the keywords of Python)
typedef i32 pass
