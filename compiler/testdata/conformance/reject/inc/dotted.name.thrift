// Included by enum_value_dotted_include.thrift.
enum Level { LOW, HIGH }
