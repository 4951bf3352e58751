// A file whose name has a dot: included as shared.types.
struct Point {
  1: optional i32 x
  2: optional i32 y
}
const Point ORIGIN = {"x": 0, "y": 0}
const i64 ANSWER = 42
