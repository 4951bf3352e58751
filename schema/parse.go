package schema

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cfg-dev/cfg/diag"
)

// This file is a parser of Thrift IDL as Apache Thrift's compiler (0.17)
// reads it: recursive descent over the grammar of its thrifty.yy, with a
// position on every node. It builds the syntax tree that load.go links
// into the schema model.

// tokKind is the kind of a token.
type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokInt    // decimal or hex integer, with its sign
	tokDouble // a number with a fraction or an exponent
	tokString // a literal, unquoted and unescaped
	tokPunct  // one of { } [ ] ( ) < > , ; : = * &
)

type token struct {
	kind tokKind
	text string // identifier, punctuation, or the number as written
	str  string // the value of a literal
	line int
	col  int
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of file"
	case tokString:
		return strconv.Quote(t.str)
	}
	return strconv.Quote(t.text)
}

// A lexer splits IDL source into tokens. Comments are //, # and /* */.
type lexer struct {
	file      string
	src       string
	off       int
	line, col int
}

func (l *lexer) errorf(line, col int, format string, args ...any) error {
	return diag.List{diag.Errorf(diag.Pos{File: l.file, Line: line, Col: col}, format, args...)}
}

// advance moves past n bytes, keeping line and column (in characters).
func (l *lexer) advance(n int) {
	for _, r := range l.src[l.off : l.off+n] {
		if r == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
	}
	l.off += n
}

func isIdentStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || '0' <= c && c <= '9' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (l *lexer) next() (token, error) {
	// Skip space and comments.
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			l.advance(1)
		case c == '#' || strings.HasPrefix(l.src[l.off:], "//"):
			n := strings.IndexByte(l.src[l.off:], '\n')
			if n < 0 {
				n = len(l.src) - l.off
			}
			l.advance(n)
		case strings.HasPrefix(l.src[l.off:], "/*"):
			n := strings.Index(l.src[l.off+2:], "*/")
			if n < 0 {
				return token{}, l.errorf(l.line, l.col, "comment not terminated")
			}
			l.advance(n + 4)
		default:
			goto tok
		}
	}
	return token{kind: tokEOF, line: l.line, col: l.col}, nil
tok:
	t := token{line: l.line, col: l.col}
	s := l.src[l.off:]
	c := s[0]
	switch {
	case isIdentStart(c):
		// Identifiers may hold dots (include.Type, Enum.VALUE).
		n := 1
		for n < len(s) && (isIdentChar(s[n]) || s[n] == '.' && n+1 < len(s) && isIdentChar(s[n+1])) {
			n++
		}
		t.kind, t.text = tokIdent, s[:n]
		l.advance(n)
		return t, nil
	case isDigit(c) || c == '.' && len(s) > 1 && isDigit(s[1]) ||
		(c == '+' || c == '-') && len(s) > 1 && (isDigit(s[1]) || s[1] == '.' && len(s) > 2 && isDigit(s[2])):
		return l.number(t)
	case c == '"' || c == '\'':
		return l.literal(t)
	case strings.IndexByte("{}[]()<>,;:=*&", c) >= 0:
		t.kind, t.text = tokPunct, s[:1]
		l.advance(1)
		return t, nil
	}
	r, _ := utf8.DecodeRuneInString(s)
	return token{}, l.errorf(t.line, t.col, "unexpected character %q", r)
}

// number reads [+-]digits, [+-]0x hex digits, or a double:
// [+-]digits? (. digits)? ([eE] [+-]? digits)?.
func (l *lexer) number(t token) (token, error) {
	s := l.src[l.off:]
	n := 0
	if s[0] == '+' || s[0] == '-' {
		n++
	}
	if strings.HasPrefix(s[n:], "0x") || strings.HasPrefix(s[n:], "0X") {
		m := n + 2
		for m < len(s) && strings.IndexByte("0123456789abcdefABCDEF", s[m]) >= 0 {
			m++
		}
		if m == n+2 {
			return token{}, l.errorf(t.line, t.col, "hex literal %q without digits", s[:m])
		}
		t.kind, t.text = tokInt, s[:m]
		l.advance(m)
		return t, nil
	}
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	t.kind = tokInt
	if n < len(s) && s[n] == '.' && n+1 < len(s) && isDigit(s[n+1]) {
		t.kind = tokDouble
		n++
		for n < len(s) && isDigit(s[n]) {
			n++
		}
	}
	if n < len(s) && (s[n] == 'e' || s[n] == 'E') {
		m := n + 1
		if m < len(s) && (s[m] == '+' || s[m] == '-') {
			m++
		}
		if m < len(s) && isDigit(s[m]) {
			for m < len(s) && isDigit(s[m]) {
				m++
			}
			t.kind, n = tokDouble, m
		}
	}
	if n < len(s) && isIdentChar(s[n]) {
		return token{}, l.errorf(t.line, t.col, "malformed number %q", s[:n+1])
	}
	t.text = s[:n]
	l.advance(n)
	return t, nil
}

// literal reads a string in double or single quotes. The escapes are \\,
// \", \', \n, \r and \t.
func (l *lexer) literal(t token) (token, error) {
	s := l.src[l.off:]
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == q:
			t.kind, t.text, t.str = tokString, s[:i+1], b.String()
			l.advance(i + 1)
			return t, nil
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case '\\', '"', '\'':
				b.WriteByte(s[i])
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			default:
				l.advance(i - 1)
				return token{}, l.errorf(l.line, l.col, "bad escape character \\%c in a literal", s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return token{}, l.errorf(t.line, t.col, "literal not terminated")
}

// Syntax tree. Names are as written; types and constants are resolved by
// the linker.

type astPos struct{ line, col int }

type astFile struct {
	includes []astInclude
	defs     []astDef
}

type astInclude struct {
	astPos
	path string
}

type astDef interface{ defName() string }

type astType struct {
	astPos
	name       string   // a base type, a named type, or "list", "set", "map"
	key, value *astType // containers: value is the element type
}

type astConst struct {
	astPos
	kind  tokKind // tokInt, tokDouble, tokString, tokIdent; 0 for a list or map
	text  string  // as written (a number or an identifier)
	str   string  // a literal's value
	list  []*astConst
	pairs [][2]*astConst
	isMap bool
}

type astField struct {
	astPos
	id       int64
	hasID    bool
	req      Requiredness
	typ      *astType
	name     string
	def      *astConst
	namePos  astPos
	idPos    astPos
	reqGiven bool
}

type astStruct struct {
	astPos
	kind   StructType
	name   string
	fields []*astField
}

type astEnumItem struct {
	astPos
	name     string
	value    int64
	hasValue bool
}

type astEnum struct {
	astPos
	name  string
	items []*astEnumItem
}

type astTypedef struct {
	astPos
	name string
	typ  *astType
}

type astConstDef struct {
	astPos
	name  string
	typ   *astType
	value *astConst
}

type astFunction struct {
	astPos
	name   string
	ret    *astType // nil for void
	args   []*astField
	throws []*astField
}

type astService struct {
	astPos
	name      string
	extends   string
	extendPos astPos
	functions []*astFunction
}

func (d *astStruct) defName() string   { return d.name }
func (d *astEnum) defName() string     { return d.name }
func (d *astTypedef) defName() string  { return d.name }
func (d *astConstDef) defName() string { return d.name }
func (d *astService) defName() string  { return d.name }

// A parser reads one IDL file.
type parser struct {
	lex *lexer
	tok token
}

// parseIDL parses the IDL source of file.
func parseIDL(file string, src []byte) (f *astFile, err error) {
	if d := diag.CheckNUL(file, src); d != nil {
		return nil, diag.List{d}
	}
	p := &parser{lex: &lexer{file: file, src: string(src), line: 1, col: 1}}
	defer func() {
		if r := recover(); r != nil {
			perr, ok := r.(parseError)
			if !ok {
				panic(r)
			}
			f, err = nil, perr.err
		}
	}()
	p.next()
	return p.file(), nil
}

type parseError struct{ err error }

func (p *parser) next() {
	t, err := p.lex.next()
	if err != nil {
		panic(parseError{err})
	}
	p.tok = t
}

func (p *parser) failAt(pos astPos, format string, args ...any) {
	panic(parseError{p.lex.errorf(pos.line, pos.col, format, args...)})
}

func (p *parser) fail(format string, args ...any) {
	p.failAt(p.pos(), format, args...)
}

func (p *parser) pos() astPos { return astPos{p.tok.line, p.tok.col} }

func (p *parser) is(punct string) bool { return p.tok.kind == tokPunct && p.tok.text == punct }

func (p *parser) isWord(w string) bool { return p.tok.kind == tokIdent && p.tok.text == w }

func (p *parser) expect(punct string, what string) {
	if !p.is(punct) {
		p.fail("got %s, want %q %s", p.tok, punct, what)
	}
	p.next()
}

func (p *parser) ident(what string) (string, astPos) {
	if p.tok.kind != tokIdent {
		p.fail("got %s, want %s", p.tok, what)
	}
	name, pos := p.tok.text, p.pos()
	if keywords[name] {
		p.fail("got keyword %q, want %s", name, what)
	}
	if pythonKeywords[name] {
		p.fail("got Python keyword %q, want %s (Thrift's compiler refuses the keywords of Python)", name, what)
	}
	p.next()
	return name, pos
}

// skipSeparator skips an optional , or ;.
func (p *parser) skipSeparator() {
	if p.is(",") || p.is(";") {
		p.next()
	}
}

// keywords are the words of the IDL, which cannot name anything.
var keywords = map[string]bool{
	"include": true, "cpp_include": true, "namespace": true, "const": true, "typedef": true,
	"enum": true, "senum": true, "struct": true, "union": true, "exception": true, "service": true,
	"extends": true, "oneway": true, "throws": true, "void": true, "required": true, "optional": true,
	"map": true, "set": true, "list": true, "cpp_type": true, "xsd_all": true, "xsd_optional": true,
	"xsd_nillable": true, "xsd_attrs": true, "bool": true, "byte": true, "i8": true, "i16": true,
	"i32": true, "i64": true, "double": true, "string": true, "binary": true, "slist": true,
	"true": false, "false": false,
}

// pythonKeywords are the names Thrift's compiler refuses when it generates
// Python, the language of the reference library cfg's encodings are
// checked against: no declaration, field or enum value may be named so.
var pythonKeywords = map[string]bool{
	"False": true, "None": true, "True": true, "and": true, "as": true, "assert": true, "break": true,
	"class": true, "continue": true, "def": true, "del": true, "elif": true, "else": true, "except": true,
	"exec": true, "finally": true, "for": true, "from": true, "global": true, "if": true, "import": true,
	"in": true, "is": true, "lambda": true, "nonlocal": true, "not": true, "or": true, "pass": true,
	"print": true, "raise": true, "return": true, "try": true, "while": true, "with": true, "yield": true,
}

// legacyHeaders are declarations Thrift's compiler refuses by name.
var legacyHeaders = map[string]string{
	"php_namespace": "namespace php", "py_module": "namespace py", "perl_package": "namespace perl",
	"ruby_namespace": "namespace rb", "java_package": "namespace java", "cocoa_package": "namespace cocoa",
	"csharp_namespace": "namespace csharp", "smalltalk_category": "namespace smalltalk.category",
	"smalltalk_prefix": "namespace smalltalk.prefix", "cpp_namespace": "namespace cpp",
	"xsd_namespace": "namespace xsd", "delphi_namespace": "namespace delphi",
}

func (p *parser) file() *astFile {
	f := &astFile{}
	// Headers come first.
	for {
		switch {
		case p.isWord("include"):
			pos := p.pos()
			p.next()
			if p.tok.kind != tokString {
				p.fail("got %s, want the file name of the include", p.tok)
			}
			f.includes = append(f.includes, astInclude{pos, p.tok.str})
			p.next()
		case p.isWord("cpp_include"):
			p.next()
			if p.tok.kind != tokString {
				p.fail("got %s, want the file name of the cpp_include", p.tok)
			}
			p.next()
		case p.isWord("namespace"):
			p.next()
			// Annotations follow the namespace of a language, not that
			// of * (as Thrift's compiler reads them).
			star := p.is("*")
			if !star && p.tok.kind != tokIdent {
				p.fail("got %s, want a language or * after namespace", p.tok)
			}
			p.next()
			if p.tok.kind != tokIdent {
				p.fail("got %s, want the namespace", p.tok)
			}
			p.next()
			if !star {
				p.annotations()
			}
		case p.tok.kind == tokIdent && legacyHeaders[p.tok.text] != "":
			p.fail("unsupported declaration %q (want %q)", p.tok.text, legacyHeaders[p.tok.text])
		default:
			goto defs
		}
	}
defs:
	for p.tok.kind != tokEOF {
		f.defs = append(f.defs, p.definition())
	}
	return f
}

func (p *parser) definition() astDef {
	pos := p.pos()
	if p.tok.kind != tokIdent {
		p.fail("got %s, want a definition (const, typedef, enum, struct, union, exception or service)", p.tok)
	}
	switch p.tok.text {
	case "const":
		p.next()
		t := p.fieldType()
		name, _ := p.ident("the name of the constant")
		p.expect("=", "after the name of the constant")
		v := p.constValue()
		// A constant takes no annotations (Thrift's compiler refuses them).
		p.skipSeparator()
		return &astConstDef{pos, name, t, v}
	case "typedef":
		p.next()
		t := p.fieldType()
		name, _ := p.ident("the name of the typedef")
		p.annotations()
		p.skipSeparator()
		return &astTypedef{pos, name, t}
	case "enum":
		p.next()
		name, _ := p.ident("the name of the enum")
		e := &astEnum{astPos: pos, name: name}
		p.expect("{", "to open the enum")
		for !p.is("}") {
			it := &astEnumItem{astPos: p.pos()}
			it.name, _ = p.ident("the name of an enum value")
			if p.is("=") {
				p.next()
				if p.tok.kind != tokInt {
					p.fail("got %s, want an integer value", p.tok)
				}
				v, err := parseInt(p.tok.text)
				if err != nil {
					p.fail("enum value %s: %v", p.tok.text, err)
				}
				it.value, it.hasValue = v, true
				p.next()
			}
			p.annotations()
			p.skipSeparator()
			e.items = append(e.items, it)
		}
		p.next()
		p.annotations()
		return e
	case "senum":
		p.fail("senum is no longer supported (use string)")
	case "struct", "union", "exception":
		kind := map[string]StructType{"struct": PlainStruct, "union": Union, "exception": Exception}[p.tok.text]
		p.next()
		name, _ := p.ident("the name of the " + map[StructType]string{PlainStruct: "struct", Union: "union", Exception: "exception"}[kind])
		if kind != Exception && p.isWord("xsd_all") {
			p.next()
		}
		s := &astStruct{astPos: pos, kind: kind, name: name}
		p.expect("{", "to open the fields")
		s.fields = p.fields("}")
		p.annotations()
		return s
	case "service":
		p.next()
		name, _ := p.ident("the name of the service")
		s := &astService{astPos: pos, name: name}
		if p.isWord("extends") {
			p.next()
			s.extendPos = p.pos()
			s.extends, _ = p.ident("the service it extends")
		}
		p.expect("{", "to open the service")
		for !p.is("}") {
			fn := &astFunction{astPos: p.pos()}
			if p.isWord("oneway") {
				p.next()
			}
			if p.isWord("void") {
				p.next()
			} else {
				fn.ret = p.fieldType()
			}
			fn.name, _ = p.ident("the name of the function")
			p.expect("(", "to open the arguments")
			fn.args = p.fields(")")
			if p.isWord("throws") {
				p.next()
				p.expect("(", "to open the exceptions")
				fn.throws = p.fields(")")
			}
			p.annotations()
			p.skipSeparator()
			s.functions = append(s.functions, fn)
		}
		p.next()
		p.annotations()
		return s
	}
	p.fail("got %s, want a definition (const, typedef, enum, struct, union, exception or service)", p.tok)
	return nil
}

// fields reads fields up to and including the closing punctuation.
func (p *parser) fields(closing string) []*astField {
	var fs []*astField
	for !p.is(closing) {
		f := &astField{astPos: p.pos()}
		if p.tok.kind == tokInt {
			f.idPos = p.pos()
			id, err := parseInt(p.tok.text)
			if err != nil {
				p.fail("field ID %s: %v", p.tok.text, err)
			}
			f.id, f.hasID = id, true
			p.next()
			p.expect(":", "after the field ID")
		}
		switch {
		case p.isWord("required"):
			f.req, f.reqGiven = Required, true
			p.next()
		case p.isWord("optional"):
			f.req, f.reqGiven = Optional, true
			p.next()
		}
		f.typ = p.fieldType()
		if p.is("&") {
			p.next()
		}
		f.name, f.namePos = p.ident("the name of the field")
		if p.is("=") {
			p.next()
			f.def = p.constValue()
		}
		for _, w := range []string{"xsd_optional", "xsd_nillable"} {
			if p.isWord(w) {
				p.next()
			}
		}
		if p.isWord("xsd_attrs") {
			p.next()
			p.expect("{", "to open the xsd_attrs")
			p.fields("}")
		}
		p.annotations()
		p.skipSeparator()
		fs = append(fs, f)
	}
	p.next()
	return fs
}

var baseTypes = map[string]bool{"bool": true, "byte": true, "i8": true, "i16": true, "i32": true,
	"i64": true, "double": true, "string": true, "binary": true, "slist": true}

func (p *parser) fieldType() *astType {
	t := &astType{astPos: p.pos()}
	if p.tok.kind != tokIdent {
		p.fail("got %s, want a type", p.tok)
	}
	switch w := p.tok.text; {
	case baseTypes[w]:
		t.name = w
		p.next()
	case w == "map":
		p.next()
		p.cppType()
		p.expect("<", "after map")
		t.name, t.key = "map", p.fieldType()
		p.expect(",", "between the key and value types of the map")
		t.value = p.fieldType()
		p.expect(">", "to close the map type")
	case w == "set":
		p.next()
		p.cppType()
		p.expect("<", "after set")
		t.name, t.value = "set", p.fieldType()
		p.expect(">", "to close the set type")
	case w == "list":
		p.next()
		p.expect("<", "after list")
		t.name, t.value = "list", p.fieldType()
		p.expect(">", "to close the list type")
		p.cppType()
	default:
		t.name, _ = p.ident("a type")
		return t // a named type takes no annotations
	}
	p.annotations()
	return t
}

func (p *parser) cppType() {
	if p.isWord("cpp_type") {
		p.next()
		if p.tok.kind != tokString {
			p.fail("got %s, want the cpp_type as a literal", p.tok)
		}
		p.next()
	}
}

// annotations skips ( name [= "value"] [,;] ... ).
func (p *parser) annotations() {
	if !p.is("(") {
		return
	}
	p.next()
	for !p.is(")") {
		if p.tok.kind != tokIdent {
			p.fail("got %s, want the name of an annotation", p.tok)
		}
		p.next()
		if p.is("=") {
			p.next()
			if p.tok.kind != tokString {
				p.fail("got %s, want the value of the annotation as a literal", p.tok)
			}
			p.next()
		}
		p.skipSeparator()
	}
	p.next()
}

func (p *parser) constValue() *astConst {
	c := &astConst{astPos: p.pos()}
	switch {
	case p.tok.kind == tokInt || p.tok.kind == tokDouble || p.tok.kind == tokIdent:
		c.kind, c.text = p.tok.kind, p.tok.text
		p.next()
	case p.tok.kind == tokString:
		c.kind, c.str = tokString, p.tok.str
		p.next()
	case p.is("["):
		p.next()
		for !p.is("]") {
			c.list = append(c.list, p.constValue())
			p.skipSeparator()
		}
		p.next()
	case p.is("{"):
		p.next()
		c.isMap = true
		for !p.is("}") {
			k := p.constValue()
			p.expect(":", "between a key and its value")
			v := p.constValue()
			c.pairs = append(c.pairs, [2]*astConst{k, v})
			p.skipSeparator()
		}
		p.next()
	default:
		p.fail("got %s, want a constant value", p.tok)
	}
	return c
}

// parseInt reads a decimal or hex integer with an optional sign, as a
// 64-bit value.
func parseInt(s string) (int64, error) {
	neg := false
	digits := s
	if digits[0] == '+' || digits[0] == '-' {
		neg = digits[0] == '-'
		digits = digits[1:]
	}
	base := 10
	if strings.HasPrefix(digits, "0x") || strings.HasPrefix(digits, "0X") {
		base, digits = 16, digits[2:]
	}
	u, err := strconv.ParseUint(digits, base, 64)
	if err != nil || !neg && u > math.MaxInt64 || neg && u > 1<<63 {
		return 0, fmt.Errorf("out of range of a 64-bit integer")
	}
	if neg {
		return -int64(u), nil
	}
	return int64(u), nil
}
