struct Thing {
  1: optional string name = "a"
}
