package termsafe

import "testing"

func TestEscapeAndName(t *testing.T) {
	if got := Escape("a\u202eb\xffc\td\ne é", false); got != `a\u202eb\xffc\td\ne é` {
		t.Errorf("Escape: %s", got)
	}
	if got := Escape("line 1\n\tline 2", true); got != "line 1\n\tline 2" {
		t.Errorf("Escape with newlines: %q", got)
	}
	if got := Name("plain name é.png"); got != "plain name é.png" {
		t.Errorf("Name changed a printable name: %s", got)
	}
	if got := Name("x\x1b[2J\nfake.png"); got != `"x\x1b[2J\nfake.png"` {
		t.Errorf("Name: %s", got)
	}
}
