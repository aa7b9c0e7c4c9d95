// Package termsafe makes text from outside (file names, decoder messages)
// safe to print on a terminal: a crafted name can neither forge output lines
// nor send escape sequences.
package termsafe

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Name returns a file name as it is when every character is printable, else
// Go-quoted ("a\nb.png", "\x1b[31m.png").
func Name(s string) string {
	if Escape(s, false) == s {
		return s
	}
	return strconv.Quote(s)
}

// Escape replaces control and other non-printing characters, and bytes that
// are not UTF-8, by Go escapes (\x1b, \u202e, \xff), keeping spaces, letters
// of every script and, with newlines, '\n' and '\t' (for messages of several
// lines).
func Escape(s string, newlines bool) string {
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		r, n := utf8.DecodeRuneInString(s[i:])
		w = n
		switch {
		case r == utf8.RuneError && n == 1:
			q := strconv.Quote(s[i : i+1])
			b.WriteString(q[1 : len(q)-1])
		case unicode.IsPrint(r) || (newlines && (r == '\n' || r == '\t')):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}
