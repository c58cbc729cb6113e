package expr

import (
	"strconv"
	"strings"
)

// format prints n in canonical form with the fewest parentheses that keep
// its structure. Parse(format(n)) yields the same tree, which the fuzz test
// relies on to catch precedence mistakes in either direction.
func format(n *node) string {
	var b strings.Builder
	writeNode(&b, n, 0)
	return b.String()
}

// Binding strengths used by format; higher binds tighter.
const (
	precOr = iota + 1
	precAnd
	precNot
	precCmp
	precAdd
	precMul
	precNeg
	precPrimary
)

func prec(n *node) int {
	switch n.kind {
	case kOr:
		return precOr
	case kAnd:
		return precAnd
	case kNot:
		return precNot
	case kCompare, kIn:
		return precCmp
	case kArith:
		if n.op == "+" || n.op == "-" {
			return precAdd
		}
		return precMul
	case kNeg:
		return precNeg
	}
	return precPrimary
}

func writeNode(b *strings.Builder, n *node, min int) {
	if prec(n) < min {
		b.WriteByte('(')
		writeNode(b, n, 0)
		b.WriteByte(')')
		return
	}
	switch n.kind {
	case kNum:
		b.WriteString(strconv.FormatFloat(n.num, 'g', -1, 64))
	case kStr:
		b.WriteByte('"')
		for i := 0; i < len(n.str); i++ {
			if c := n.str[i]; c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(n.str[i])
		}
		b.WriteByte('"')
	case kName:
		b.WriteString(n.str)
	case kNeg:
		b.WriteString("-")
		writeNode(b, n.x, precNeg)
	case kNot:
		b.WriteString("!")
		writeNode(b, n.x, precNot)
	case kOr, kAnd, kArith:
		p := prec(n)
		writeNode(b, n.x, p)
		b.WriteString(" " + n.op + " ")
		writeNode(b, n.y, p+1) // left-associative: an equal-strength right side needs parentheses
	case kCompare:
		writeNode(b, n.x, precAdd)
		b.WriteString(" " + n.op + " ")
		writeNode(b, n.y, precAdd)
	case kIn:
		writeNode(b, n.x, precAdd)
		b.WriteString(" " + n.op + " [")
		for i, el := range n.list {
			if i > 0 {
				b.WriteString(", ")
			}
			writeNode(b, el, precAdd)
		}
		b.WriteString("]")
	}
}
