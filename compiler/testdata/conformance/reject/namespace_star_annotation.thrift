// error: source/namespace_star_annotation.thrift:2:17: got "(", want a definition (const, typedef, enum, struct, union, exception or service)
namespace * all (on = "every language")
