// Every type, in every position the reference reads them, with defaults.
namespace py conformance.every (note = "annotations on a namespace")
namespace * every

include "shared.types.thrift"
include "a/dup.thrift"

enum Color {
  RED = 1,
  GREEN,
  BLUE = 0x10,
  MINUS = -0x2,
  TOP = 2147483647,
  BOTTOM = -2147483648
}

enum Shade { LIGHT = 1, DARK = 2, VERY_DARK = 16 }

typedef Color Hue
typedef list<i64> Longs (cpp.type = "std::vector<int64_t>")

struct Inner {
  1: optional string label = "in"
  2: optional i32 n
}

union Choice {
  1: string text
  2: required i64 number
  3: Inner inner
}

// Not in the values sent to the reference: its generated reader sets the
// default member of a union before reading, so it reads two members.
union WithDefault {
  1: string text
  2: Inner inner = {"label": "from a union default"}
}

struct Every {
  1: required bool flag = true
  2: optional byte b = -128
  3: optional i8 tiny = 127
  4: optional i16 small = -32768
  5: optional i32 medium = 2147483647
  6: optional i64 big = -9223372036854775808
  7: optional double ratio = .5
  8: optional double third = 1e-3
  9: optional string text = 'single "quoted" \'text\'\n'
  10: optional binary blob = "bytes\t"
  11: optional Color color = Color.BLUE
  12: optional Hue hue = Shade.GREEN
  13: optional list<string> names = ["a", "b",]
  14: optional set<i32> numbers = [3, 1, 2, 1]
  15: optional map<string, double> weights = {"x": 1, "y": 2.5}
  16: optional Inner & inner = {"n": 7}
  17: optional Choice choice
  18: optional map<Color, list<set<string>>> nested
  19: optional Longs longs = [1, -2]
  20: optional shared.types.Point point = {"x": 1}
  21: optional dup.Thing thing
  22: optional set<binary> blobs = {}
  23: optional i32 next = -0x7fffffff
  24: optional list<Shade> shades = [Shade.LIGHT, Shade.DARK]
  25: optional i64 from_const = shared.types.ANSWER
  26: optional map<i64, binary> by_id (python.immutable = "")
  27: optional string xsd xsd_optional xsd_nillable
}

const Hue DEFAULT_HUE = Color.GREEN
const binary MAGIC = "magic\\bytes"
const list<double> DOUBLES = [1, .25, -3.5e2, 0]
const map<string, Inner> INNERS = {"one": {"n": 1}, "two": {"label": "2", "n": 2}}
const Every SOME = {"flag": false, "medium": -1, "names": [], "color": Color.RED}
const set<string> TAGS = ["b", "a"]
const i64 NEG_HEX = -0x10
const bool YES = 1
const i32 COPY = shared.types.ANSWER

struct NoIDs {
  string first
  i32 second
  0: i32 zero
  -5: i32 negative
  4: i32 fourth
}

struct Plain xsd_all {
  1: i32 a
}

exception Oops {
  1: string message
}

service Svc {
  void ping(),
  i32 add(i32 a, i32 b) throws (1: Oops oops),
  oneway void fire(1: Every every)
}
