package expr

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF tokKind = iota
	tNum
	tStr
	tName
	tOp // operators, punctuation and keywords; text is the spelling in the source
)

type token struct {
	kind     tokKind
	text     string  // tOp only
	num      float64 // tNum only
	str      string  // tStr: decoded contents; tName: the name
	pos, end int     // byte span in the source
}

func (t token) is(text string) bool { return t.kind == tOp && t.text == text }

// The word forms are aliases so that authors coming from YAML-ish or Python
// conditions need not remember the symbols.
func (t token) isOr() bool  { return t.is("||") || t.is("or") }
func (t token) isAnd() bool { return t.is("&&") || t.is("and") }
func (t token) isNot() bool { return t.is("!") || t.is("not") }

func (t token) isCmp() bool {
	if t.kind != tOp {
		return false
	}
	switch t.text {
	case "==", "!=", "<", "<=", ">", ">=":
		return true
	}
	return false
}

var keywords = map[string]bool{"in": true, "not": true, "true": true, "false": true, "and": true, "or": true}

// lexer is a small value type so the parser can copy it to look one token
// further ahead (for "not in") without a token buffer.
type lexer struct {
	src string
	pos int
}

func isSpace(c byte) bool    { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isDigit(c byte) bool    { return '0' <= c && c <= '9' }
func isLetter(c byte) bool   { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' }
func isNameChar(c byte) bool { return isLetter(c) || isDigit(c) }
func errAt(src string, pos int, msg string) *SyntaxError {
	// A byte position inside a multi-byte character (the length limit cuts
	// anywhere) would count the character's bytes as several columns.
	for pos > 0 && pos < len(src) && !utf8.RuneStart(src[pos]) {
		pos--
	}
	return &SyntaxError{Src: src, Col: utf8.RuneCountInString(src[:pos]) + 1, Msg: msg}
}

func (l *lexer) next() (token, error) {
	for l.pos < len(l.src) && isSpace(l.src[l.pos]) {
		l.pos++
	}
	start := l.pos
	if start >= len(l.src) {
		return token{kind: tEOF, pos: start, end: start}, nil
	}
	c := l.src[start]
	switch {
	case isDigit(c):
		return l.number()
	case isLetter(c):
		return l.name()
	case c == '"':
		return l.string()
	}
	if start+1 < len(l.src) {
		switch two := l.src[start : start+2]; two {
		case "||", "&&", "==", "!=", "<=", ">=":
			l.pos += 2
			return token{kind: tOp, text: two, pos: start, end: l.pos}, nil
		}
	}
	switch c {
	case '!', '<', '>', '+', '-', '*', '/', '(', ')', '[', ']', ',':
		l.pos++
		return token{kind: tOp, text: l.src[start:l.pos], pos: start, end: l.pos}, nil
	case '=':
		return token{}, errAt(l.src, start, `unexpected "="; use "==" to compare`)
	case '&':
		return token{}, errAt(l.src, start, `unexpected "&"; use "&&" for "and"`)
	case '|':
		return token{}, errAt(l.src, start, `unexpected "|"; use "||" for "or"`)
	}
	r, size := utf8.DecodeRuneInString(l.src[start:])
	if r == utf8.RuneError && size == 1 {
		return token{}, errAt(l.src, start, fmt.Sprintf("invalid UTF-8 byte 0x%02x", c))
	}
	return token{}, errAt(l.src, start, fmt.Sprintf("unexpected character %q", r))
}

// number accepts only plain decimal literals. Anything glued to the digits
// (10ms, 1_000, 0x10, 1.2.3) is rejected as a whole rather than split into
// two tokens, because "10ms" silently meaning "10 ms" (a name) would be
// worse than an error.
func (l *lexer) number() (token, error) {
	src, start := l.src, l.pos
	i := start
	digits := func() {
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	}
	digits()
	if i+1 < len(src) && src[i] == '.' && isDigit(src[i+1]) {
		i++
		digits()
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		j := i + 1
		if j < len(src) && (src[j] == '+' || src[j] == '-') {
			j++
		}
		if j < len(src) && isDigit(src[j]) {
			i = j
			digits()
		}
	}
	if i < len(src) && (isNameChar(src[i]) || src[i] == '.') {
		j := i
		for j < len(src) && (isNameChar(src[j]) || src[j] == '.') {
			j++
		}
		return token{}, errAt(src, start, fmt.Sprintf("invalid number %q; write plain decimals such as 10, 0.5 or 1e3 (no units)", src[start:j]))
	}
	f, err := strconv.ParseFloat(src[start:i], 64)
	if err != nil {
		return token{}, errAt(src, start, fmt.Sprintf("number %s is out of range", src[start:i]))
	}
	l.pos = i
	return token{kind: tNum, num: f, pos: start, end: i}, nil
}

// name lets segments after the first start with a digit because kernel and
// tool counters do (c1.Tcp.OutRsts is fine either way, but per-CPU or
// per-queue figures like nic.rx.0.packets need it).
func (l *lexer) name() (token, error) {
	src, start := l.src, l.pos
	i := start + 1
	for i < len(src) && isNameChar(src[i]) {
		i++
	}
	for i < len(src) && src[i] == '.' {
		j := i + 1
		if j >= len(src) || !isNameChar(src[j]) {
			return token{}, errAt(src, j, `expected name segment after "."`)
		}
		for j < len(src) && isNameChar(src[j]) {
			j++
		}
		i = j
	}
	l.pos = i
	text := src[start:i]
	if keywords[text] {
		return token{kind: tOp, text: text, pos: start, end: i}, nil
	}
	return token{kind: tName, str: text, pos: start, end: i}, nil
}

// string keeps escapes to the two needed to write any double-quoted value, so
// that a scenario's meaning never depends on a table of escape rules.
func (l *lexer) string() (token, error) {
	src, start := l.src, l.pos
	var b strings.Builder
	i := start + 1
	for {
		if i >= len(src) {
			return token{}, errAt(src, start, `unterminated string; close it with "`)
		}
		switch c := src[i]; c {
		case '"':
			l.pos = i + 1
			return token{kind: tStr, str: b.String(), pos: start, end: l.pos}, nil
		case '\\':
			if i+1 >= len(src) {
				return token{}, errAt(src, start, `unterminated string; close it with "`)
			}
			if e := src[i+1]; e == '"' || e == '\\' {
				b.WriteByte(e)
				i += 2
				continue
			}
			return token{}, errAt(src, i, `invalid escape in string; only \" and \\ are allowed`)
		default:
			b.WriteByte(c)
			i++
		}
	}
}
