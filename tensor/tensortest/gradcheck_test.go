package tensortest

import "testing"

func TestPanics(t *testing.T) {
	if !Panics(func() { panic("bad shape") }) {
		t.Error("a panicking func reported as not panicking")
	}
	if Panics(func() {}) {
		t.Error("a returning func reported as panicking")
	}
}
