// error: source/keyword_name.thrift:2:8: got keyword "list", want the name of the struct
struct list {
  1: optional i32 a
}
