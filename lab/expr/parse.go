package expr

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

type nodeKind uint8

const (
	kNum     nodeKind = iota // num
	kStr                     // str
	kName                    // str is the name
	kNeg                     // -x
	kNot                     // !x
	kArith                   // x op y, op one of + - * /
	kCompare                 // x op y, op one of == != < <= > >=
	kIn                      // x in list, or x not in list when op is "not in"
	kAnd                     // x && y
	kOr                      // x || y
)

type node struct {
	kind     nodeKind
	op       string
	num      float64
	str      string
	x, y     *node
	list     []*node
	pos, end int // byte span in the source, for error messages
}

// parser is a recursive-descent parser with one token of lookahead, one
// function per precedence level. Tokens are lexed on demand so that the first
// error in reading order is the one reported.
type parser struct {
	src   string
	lx    lexer
	tok   token // current, not yet consumed
	prev  token // last consumed; kind tEOF before the first
	depth int
}

func (p *parser) advance() error {
	p.prev = p.tok
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

// peekIsIn looks past the current token, which lets "not" after an operand
// be told apart as "not in" without committing to it.
func (p *parser) peekIsIn() bool {
	l := p.lx
	t, err := l.next()
	return err == nil && t.is("in")
}

func (p *parser) errAt(pos int, msg string) *SyntaxError { return errAt(p.src, pos, msg) }

func (p *parser) raw(t token) string { return p.src[t.pos:t.end] }

func (p *parser) describe(t token) string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tNum:
		return "number " + p.raw(t)
	case tStr:
		return "string " + p.raw(t)
	case tName:
		return fmt.Sprintf("name %q", t.str)
	}
	return strconv.Quote(t.text)
}

// enter counts a nesting level. Binary chains do not count: they are parsed
// iteratively, so only parentheses and unary operators deepen the recursion.
func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errAt(p.tok.pos, fmt.Sprintf("expression nested too deeply (more than %d levels of parentheses or unary operators)", maxDepth))
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) operandErr() error {
	msg := "expected operand"
	if p.prev.kind != tEOF {
		msg += fmt.Sprintf(" after %q", p.raw(p.prev))
	}
	if p.tok.kind != tEOF {
		msg += ", found " + p.describe(p.tok)
		if p.tok.isNot() {
			msg += ` (negation binds looser than comparison and arithmetic; wrap it in parentheses)`
		}
	}
	return p.errAt(p.tok.pos, msg)
}

func (p *parser) parseOr() (*node, error) {
	x, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.tok.isOr() {
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		x = &node{kind: kOr, op: "||", x: x, y: y, pos: x.pos, end: y.end}
	}
	return x, nil
}

func (p *parser) parseAnd() (*node, error) {
	x, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	for p.tok.isAnd() {
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		x = &node{kind: kAnd, op: "&&", x: x, y: y, pos: x.pos, end: y.end}
	}
	return x, nil
}

func (p *parser) parseNot() (*node, error) {
	if !p.tok.isNot() {
		return p.parseCmp()
	}
	pos := p.tok.pos
	if err := p.enter(); err != nil {
		return nil, err
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	x, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	p.leave()
	return &node{kind: kNot, op: "!", x: x, pos: pos, end: x.end}, nil
}

func (p *parser) parseCmp() (*node, error) {
	x, err := p.parseAdd()
	if err != nil {
		return nil, err
	}
	var n *node
	switch {
	case p.tok.isCmp():
		op := p.tok.text
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := p.parseAdd()
		if err != nil {
			return nil, err
		}
		n = &node{kind: kCompare, op: op, x: x, y: y, pos: x.pos, end: y.end}
	case p.tok.is("in"):
		if err := p.advance(); err != nil {
			return nil, err
		}
		if n, err = p.parseList(x, "in"); err != nil {
			return nil, err
		}
	case p.tok.is("not"):
		if err := p.advance(); err != nil {
			return nil, err
		}
		if !p.tok.is("in") {
			return nil, p.errAt(p.tok.pos, `expected "in" after "not", found `+p.describe(p.tok))
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		if n, err = p.parseList(x, "not in"); err != nil {
			return nil, err
		}
	default:
		return x, nil
	}
	if p.tok.isCmp() || p.tok.is("in") || p.tok.is("not") && p.peekIsIn() {
		return nil, p.errAt(p.tok.pos, `comparisons do not chain; join them with "&&"`)
	}
	return n, nil
}

// parseList reads "[a, b, ...]" after in / not in. Elements are arithmetic
// expressions, so negative numbers and computed bounds work; an empty list is
// rejected because it can only ever be a mistake.
func (p *parser) parseList(x *node, op string) (*node, error) {
	if !p.tok.is("[") {
		return nil, p.errAt(p.tok.pos, fmt.Sprintf(`expected "[" after %q, found %s`, p.raw(p.prev), p.describe(p.tok)))
	}
	open := p.tok
	if err := p.advance(); err != nil {
		return nil, err
	}
	n := &node{kind: kIn, op: op, x: x, pos: x.pos}
	for {
		el, err := p.parseAdd()
		if err != nil {
			return nil, err
		}
		n.list = append(n.list, el)
		switch {
		case p.tok.is(","):
			if err := p.advance(); err != nil {
				return nil, err
			}
		case p.tok.is("]"):
			n.end = p.tok.end
			if err := p.advance(); err != nil {
				return nil, err
			}
			return n, nil
		default:
			return nil, p.errAt(p.tok.pos, fmt.Sprintf(`expected "," or "]" in list opened at col %d, found %s`, p.col(open.pos), p.describe(p.tok)))
		}
	}
}

func (p *parser) col(pos int) int { return utf8.RuneCountInString(p.src[:pos]) + 1 }

func (p *parser) parseAdd() (*node, error) {
	x, err := p.parseMul()
	if err != nil {
		return nil, err
	}
	for p.tok.is("+") || p.tok.is("-") {
		op := p.tok.text
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := p.parseMul()
		if err != nil {
			return nil, err
		}
		x = &node{kind: kArith, op: op, x: x, y: y, pos: x.pos, end: y.end}
	}
	return x, nil
}

func (p *parser) parseMul() (*node, error) {
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	for p.tok.is("*") || p.tok.is("/") {
		op := p.tok.text
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		x = &node{kind: kArith, op: op, x: x, y: y, pos: x.pos, end: y.end}
	}
	return x, nil
}

func (p *parser) parseUnary() (*node, error) {
	if !p.tok.is("-") {
		return p.parsePrimary()
	}
	pos := p.tok.pos
	if err := p.enter(); err != nil {
		return nil, err
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	p.leave()
	return &node{kind: kNeg, op: "-", x: x, pos: pos, end: x.end}, nil
}

func (p *parser) parsePrimary() (*node, error) {
	t := p.tok
	var n *node
	switch {
	case t.kind == tNum:
		n = &node{kind: kNum, num: t.num}
	case t.kind == tStr:
		n = &node{kind: kStr, str: t.str}
	case t.kind == tName:
		n = &node{kind: kName, str: t.str}
	case t.is("true"):
		n = &node{kind: kNum, num: 1}
	case t.is("false"):
		n = &node{kind: kNum, num: 0}
	case t.is("("):
		if err := p.enter(); err != nil {
			return nil, err
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		x, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if !p.tok.is(")") {
			return nil, p.errAt(p.tok.pos, fmt.Sprintf(`expected ")" to close "(" at col %d, found %s`, p.col(t.pos), p.describe(p.tok)))
		}
		// Widen the span to the parentheses so error snippets read naturally.
		x.pos, x.end = t.pos, p.tok.end
		if err := p.advance(); err != nil {
			return nil, err
		}
		p.leave()
		return x, nil
	default:
		return nil, p.operandErr()
	}
	n.pos, n.end = t.pos, t.end
	if err := p.advance(); err != nil {
		return nil, err
	}
	return n, nil
}
