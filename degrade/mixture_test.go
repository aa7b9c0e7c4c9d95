package degrade

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMixtureChoose(t *testing.T) {
	m := Mixture{{Name: "a", Weight: 3, Options: DefaultOptions()}, {Name: "b", Weight: 1, Options: DefaultOptions()}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	counts := make([]int, 2)
	const n = 1000
	for i := range n {
		counts[m.Choose((float64(i)+0.5)/n)]++
	}
	if counts[0] != 750 || counts[1] != 250 {
		t.Fatalf("weights 3:1 chose %v of %d", counts, n)
	}
	if got := m.String(); got != "a:3 b:1" {
		t.Errorf("String() = %q", got)
	}
	if m.Choose(0) != 0 || m.Choose(0.9999999) != 1 {
		t.Fatal("the ends of [0, 1) pick the wrong components")
	}
}

func TestMixtureValidate(t *testing.T) {
	small := DefaultOptions()
	small.Crop.Size = 256
	bad := DefaultOptions()
	bad.Stage1.GaussianProb = 2
	for name, m := range map[string]Mixture{
		"empty":       nil,
		"zero weight": {{Name: "a", Options: DefaultOptions()}},
		"no options":  {{Name: "a", Weight: 1}},
		"crop":        {{Name: "a", Weight: 1, Options: DefaultOptions()}, {Name: "b", Weight: 1, Options: small}},
		"invalid":     {{Name: "a", Weight: 1, Options: bad}},
	} {
		if err := m.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseComponent(t *testing.T) {
	c, err := ParseComponent(DefaultName)
	if err != nil || c.Weight != 1 || c.Name != DefaultName || c.Options.Final.JPEG != DefaultOptions().Final.JPEG {
		t.Fatalf("%q: %+v, %v", DefaultName, c, err)
	}
	path := filepath.Join(t.TempDir(), "mild.json")
	if err := os.WriteFile(path, []byte(`{"final": {"jpeg": [80, 95]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = ParseComponent(path + ":0.25")
	if err != nil || c.Weight != 0.25 || c.Name != path || c.Options.Final.JPEG != [2]float64{80, 95} {
		t.Fatalf("file with weight: %+v, %v", c, err)
	}
	for _, spec := range []string{"", ":1", DefaultName + ":0", DefaultName + ":x", DefaultName + ":-1", path + "x"} {
		if _, err := ParseComponent(spec); err == nil {
			t.Errorf("%q: no error", spec)
		} else if spec == path+"x" && !strings.Contains(err.Error(), "no such file") {
			t.Errorf("%q: %v", spec, err)
		}
	}
}
