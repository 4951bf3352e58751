// A second file named dup, included beside a/dup.thrift.
struct Other {
  1: optional i32 v
}
