// error: source/enum_value_dotted_include.thrift:5:41: S.level: default: got dotted.name.Level.HIGH, want a value of enum Level (Thrift's compiler looks it up as "Level.HIGH": it drops two names at most)
include "inc/dotted.name.thrift"

struct S {
  1: optional dotted.name.Level level = dotted.name.Level.HIGH
}
