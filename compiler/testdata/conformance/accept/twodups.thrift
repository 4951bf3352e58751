include "a/dup.thrift"
include "dup.thrift"

struct Both {
  1: optional dup.Thing thing
  2: optional dup.Other other
}
