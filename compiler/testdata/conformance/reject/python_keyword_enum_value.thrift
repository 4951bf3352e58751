// error: source/python_keyword_enum_value.thrift:2:10: got Python keyword "None", want the name of an enum value (Thrift's compiler refuses the keywords of Python)
enum E { None }
