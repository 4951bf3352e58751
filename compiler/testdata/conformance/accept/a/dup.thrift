struct Thing {
  1: optional string name = "a"
}
enum Level { LOW, HIGH }
