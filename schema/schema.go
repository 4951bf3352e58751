// Package schema loads Thrift IDL files from a config repository and exposes
// them as a typed model with source positions.
//
// Files are parsed and linked by a parser of this package (parse.go, a
// recursive descent over the grammar of Apache Thrift 0.17's compiler) and
// a linker (link.go) that reads what that compiler reads with the same
// meaning: field IDs (a field without one, or with one of 0 or less, gets
// -1, -2, ... in declaration order), enum values (which must fit an i32),
// defaults and constants (read with the declarations before them). What it
// refuses is refused with a position, and so are NUL bytes, integer
// constants out of the range of their type, string constants that are not
// UTF-8 and names that are keywords of Python, the language of the
// reference library. Includes are resolved relative to the including file.
// All reads go through an io/fs.FS rooted at the repository, so the same
// code reads a work tree or a git tree. A Loader converts each file once
// and shares the result: two references to the same struct type are the
// same *Struct.
package schema

import (
	"github.com/cfg-dev/cfg/diag"
)

// Kind is the kind of a Thrift type.
type Kind int

// The Thrift type kinds.
const (
	Bool Kind = iota + 1
	I8
	I16
	I32
	I64
	Double
	String
	Binary
	List
	Set
	Map
	StructKind
	EnumKind
)

// Type is a resolved Thrift type; typedefs are resolved to their target.
type Type struct {
	Kind   Kind
	Elem   *Type   // list and set elements, map values
	Key    *Type   // map keys
	Struct *Struct // StructKind
	Enum   *Enum   // EnumKind
}

var primitiveNames = map[Kind]string{
	Bool: "bool", I8: "i8", I16: "i16", I32: "i32", I64: "i64",
	Double: "double", String: "string", Binary: "binary",
}

// String returns the type as it would be written in IDL.
func (t *Type) String() string {
	switch t.Kind {
	case List:
		return "list<" + t.Elem.String() + ">"
	case Set:
		return "set<" + t.Elem.String() + ">"
	case Map:
		return "map<" + t.Key.String() + ", " + t.Elem.String() + ">"
	case StructKind:
		return t.Struct.Name
	case EnumKind:
		return t.Enum.Name
	}
	return primitiveNames[t.Kind]
}

// IntRange returns the bounds of an integer kind.
func (k Kind) IntRange() (lo, hi int64, ok bool) {
	switch k {
	case I8:
		return -1 << 7, 1<<7 - 1, true
	case I16:
		return -1 << 15, 1<<15 - 1, true
	case I32:
		return -1 << 31, 1<<31 - 1, true
	case I64:
		return -1 << 63, 1<<63 - 1, true
	}
	return 0, 0, false
}

// StructType tells a struct from a union or an exception.
type StructType int

// The kinds of struct-like declarations.
const (
	PlainStruct StructType = iota
	Union
	Exception
)

// Struct is a struct, union or exception declaration.
type Struct struct {
	Name   string
	File   string // repository-relative path of the declaring .thrift file
	Pos    diag.Pos
	Type   StructType
	Fields []*Field // in declaration order

	byName map[string]*Field
	byID   []*Field // Fields in field ID order
}

// FieldsByID returns the fields in field ID order, the order Thrift's
// generated code writes them in.
func (s *Struct) FieldsByID() []*Field { return s.byID }

// Field returns the field called name, or nil.
func (s *Struct) Field(name string) *Field { return s.byName[name] }

// FieldNames returns the names of the fields in declaration order.
func (s *Struct) FieldNames() []string {
	names := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		names[i] = f.Name
	}
	return names
}

// Requiredness says whether a field must be set.
type Requiredness int

// Field requiredness as written in the IDL.
const (
	Default Requiredness = iota // neither required nor optional
	Required
	Optional
)

// Field is a field of a struct.
type Field struct {
	ID       int16
	Name     string
	Index    int // position in Struct.Fields
	Type     *Type
	Required Requiredness
	// Default is the IDL default value, or nil. See Const for its form.
	Default Const
	Pos     diag.Pos
}

// Enum is an enum declaration.
type Enum struct {
	Name  string
	File  string
	Pos   diag.Pos
	Items []*EnumItem

	byName  map[string]*EnumItem
	byValue map[int32]*EnumItem
}

// Item returns the item called name, or nil.
func (e *Enum) Item(name string) *EnumItem { return e.byName[name] }

// ItemByValue returns the item with the given value, or nil.
func (e *Enum) ItemByValue(v int32) *EnumItem { return e.byValue[v] }

// ItemNames returns the names of the items in declaration order.
func (e *Enum) ItemNames() []string {
	names := make([]string, len(e.Items))
	for i, it := range e.Items {
		names[i] = it.Name
	}
	return names
}

// EnumItem is one value of an enum.
type EnumItem struct {
	Enum  *Enum
	Name  string
	Value int32
	Pos   diag.Pos
}

func (it *EnumItem) String() string { return it.Enum.Name + "." + it.Name }

// Const is a constant value from the IDL, already converted to its declared
// type. Its dynamic type is one of: bool, int64, float64, string, []byte,
// *EnumItem, []Const (list or set), []ConstPair (map), *StructConst.
type Const any

// ConstPair is one entry of a constant map.
type ConstPair struct{ Key, Value Const }

// StructConst is a constant struct value; Fields holds the fields it sets.
type StructConst struct {
	Struct *Struct
	Fields map[string]Const
}

// Constant is a named constant declared with "const".
type Constant struct {
	Name  string
	Type  *Type
	Value Const
	Pos   diag.Pos
}

// Typedef is a named alias of another type.
type Typedef struct {
	Name   string
	Target *Type
	Pos    diag.Pos
}

// File is one loaded .thrift file.
type File struct {
	Path      string // repository-relative, e.g. "source/schemas/job.thrift"
	Structs   map[string]*Struct
	Enums     map[string]*Enum
	Typedefs  map[string]*Typedef
	Constants map[string]*Constant
	Includes  map[string]*File // by include name ("common" for common.thrift)
}
