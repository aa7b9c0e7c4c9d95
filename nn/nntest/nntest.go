// Package nntest holds test helpers for models built on nn: checking a
// model's parameter registry against the state-dict table of a published
// checkpoint, so that real weight files load by name.
package nntest

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"tsdsr/nn"
)

// CheckKeyTable compares p's parameter names and shapes with a table file
// of "name d0,d1,..." lines ('#' comments allowed), reporting every missing,
// unexpected or mis-shaped name, and returns the number of tensors and of
// parameters the table lists.
func CheckKeyTable(t testing.TB, p *nn.Params, path string) (tensors, params int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, shape, _ := strings.Cut(line, " ")
		want[name] = shape
		n := 1
		for _, d := range strings.Split(shape, ",") {
			v, err := strconv.Atoi(d)
			if err != nil {
				t.Fatalf("%s: bad line %q", path, line)
			}
			n *= v
		}
		params += n
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, q := range p.List() {
		s := make([]string, len(q.T.Shape))
		for i, d := range q.T.Shape {
			s[i] = strconv.Itoa(d)
		}
		got[q.Name] = strings.Join(s, ",")
	}
	for name, shape := range want {
		if got[name] != shape {
			t.Errorf("%s: shape %q, want %q", name, got[name], shape)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected parameter %s", name)
		}
	}
	return len(want), params
}
