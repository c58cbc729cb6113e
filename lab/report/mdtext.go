package report

import "strings"

// Text from a run folder reaches Markdown (summary.md, `compare --md`,
// which CI appends to a job summary) and may come from anywhere: a line
// break in a kernel string started a heading of its own, a backtick in a
// cell id closed its code span and let <img src=…> or a link through. Two
// helpers make such text inert.

// mdEscaper escapes what turns inline text into markup that fetches or
// links ([, ], <, >, and the "www." and "://" that GitHub's autolinks
// start from), ends a code span or a table cell (`, |), escapes (\), and
// joins lines; emphasis characters stay readable in the file. (An e-mail
// address stays a mailto: link on GitHub: no escape stops that one.)
var mdEscaper = strings.NewReplacer(`\`, `\\`, "`", "\\`", "[", `\[`, "]", `\]`, "<", `\<`, ">", `\>`, "|", `\|`,
	"www.", `www\.`, "://", `\://`, "\r\n", " ", "\n", " ", "\r", " ")

// mdText is s as one line of plain Markdown text.
func mdText(s string) string { return mdEscaper.Replace(s) }

// mdLine is mdText for text that starts a line, where "#", "-", "1." or
// ">" would make it a heading, a list or a quote. A digit cannot be
// escaped (CommonMark escapes punctuation only; "\\6" shows its
// backslash): an ordered list's "1." or "1)" is escaped at its dot.
func mdLine(s string) string {
	t := mdText(s)
	if t != "" && strings.ContainsRune("#-+*=>", rune(t[0])) {
		return `\` + t
	}
	digits := len(t) - len(strings.TrimLeft(t, "0123456789"))
	if digits > 0 && digits < len(t) && (t[digits] == '.' || t[digits] == ')') {
		return t[:digits] + `\` + t[digits:]
	}
	return t
}

// mdCode is s as one inline code span, whatever backticks it holds: the
// fence is longer than its longest run of them (CommonMark). Inside a table
// the span goes through mdCell too (GFM needs its pipes escaped even in
// code; elsewhere the backslash would show).
func mdCode(s string) string {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if longest > 0 || s == "" || strings.HasPrefix(s, " ") && strings.HasSuffix(s, " ") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}
