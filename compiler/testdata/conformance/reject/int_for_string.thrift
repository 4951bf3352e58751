// error: source/int_for_string.thrift:2:18: const S: got integer 1, want string
const string S = 1
