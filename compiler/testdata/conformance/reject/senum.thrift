// error: source/senum.thrift:2:1: senum is no longer supported (use string)
senum S { "a" }
