// A struct constant is taken as a value only where the type is written as
// a typedef. cfg reads the default as the constant; the Python code the
// reference generates reads it as an empty Point (a known difference: cfg
// writes the field, so readers never need the default).
struct Point {
  1: optional i32 x
  2: optional i32 y = 2
}

typedef Point PointAlias

const Point ONE = {"x": 1}

struct Shape {
  1: optional PointAlias corner = ONE
}
