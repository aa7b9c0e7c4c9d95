package main

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// quoteName returns a file name fit for the terminal: as it is when every
// character is printable, else Go-quoted ("a\nb.png", "\x1b[31m.png"), so
// a crafted name can neither forge output lines nor send escape sequences.
func quoteName(s string) string {
	if escapeControl(s, false) == s {
		return s
	}
	return strconv.Quote(s)
}

// escapeControl replaces control and other non-printing characters, and
// bytes that are not UTF-8, by Go escapes (\x1b, \u202e, \xff), keeping
// spaces, letters of every script and, with newlines, '\n' and '\t' (for
// messages of several lines).
func escapeControl(s string, newlines bool) string {
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
