package eval

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Pair is one image to evaluate: a result and, for full-reference metrics,
// its ground truth.
type Pair struct {
	Name string // file name of the result, shown in reports
	SR   string // path of the result (the LR input for a baseline run)
	GT   string // path of the ground truth; "" when there is none
}

// imageExts are the files a folder listing picks up.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".webp": true,
	".bmp": true, ".tif": true, ".tiff": true}

// ListImages returns the image files of dir (not recursive, hidden files
// skipped), sorted by name.
func ListImages(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || !imageExts[strings.ToLower(filepath.Ext(n))] {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no images (.png, .jpg, .webp, .bmp, .tif)", dir)
	}
	sort.Strings(out)
	return out, nil
}

// suffixToken matches the name endings that SR datasets and tools append:
// LR/HR/SR/GT with an optional scale (Canon_001_LR4, baby_HR), x4 or 4x,
// out/output/result/rlt/restored/bicubic, and tsdsr itself. Matching is
// case-insensitive.
var suffixToken = regexp.MustCompile(`(?i)[_\-.](?:(?:lr|hr|sr|gt)x?\d*|x\d+|\d+x|out|output|result|rlt|restored|bicubic|tsdsr)$`)

// Key is the name by which results and ground truths are matched when their
// file names differ: the base name without extension, with known suffix
// tokens (see suffixToken) removed from the end repeatedly. For example
// "Canon_001_LR4.png", "Canon_001_HR.png", "Canon_001_x4_SR.png" and
// "Canon_001_out.jpg" all have the key "Canon_001".
func Key(name string) string {
	k := strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	for {
		loc := suffixToken.FindStringIndex(k)
		if loc == nil || loc[0] == 0 {
			return k
		}
		k = k[:loc[0]]
	}
}

func stem(p string) string {
	b := filepath.Base(p)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// PairFiles matches results with ground truths. A result pairs with the
// ground truth of the same name without extension if there is one (so
// RealSR's identically named LR/HR/result folders pair directly), else
// with the one of the same Key. It is an error when a result has no ground
// truth or when two files of one side share a key; ground truths without a
// result are returned in unused so that the caller can warn.
func PairFiles(srs, gts []string) (pairs []Pair, unused []string, err error) {
	byStem := map[string]string{}
	byKey := map[string]string{}
	dupKey := map[string]bool{}
	for _, g := range gts {
		s := stem(g)
		if prev, ok := byStem[s]; ok {
			return nil, nil, fmt.Errorf("ground truths %s and %s have the same name", prev, g)
		}
		byStem[s] = g
		k := Key(g)
		if _, ok := byKey[k]; ok {
			dupKey[k] = true
		}
		byKey[k] = g
	}
	used := map[string]string{} // ground truth -> result
	var missing []string
	for _, s := range srs {
		g, ok := byStem[stem(s)]
		if !ok {
			k := Key(s)
			if dupKey[k] {
				return nil, nil, fmt.Errorf("%s: several ground truths have the key %q", s, k)
			}
			g, ok = byKey[k]
		}
		if !ok {
			missing = append(missing, filepath.Base(s))
			continue
		}
		if prev, dup := used[g]; dup {
			return nil, nil, fmt.Errorf("%s and %s both pair with ground truth %s", prev, s, g)
		}
		used[g] = s
		pairs = append(pairs, Pair{Name: filepath.Base(s), SR: s, GT: g})
	}
	if len(missing) > 0 {
		more := ""
		if len(missing) > 5 {
			more = fmt.Sprintf(" and %d more", len(missing)-5)
			missing = missing[:5]
		}
		return nil, nil, fmt.Errorf("no ground truth for %s%s (files pair by name, or by name without suffixes such as _LR4, _HR, _SR, _x4, _out)",
			strings.Join(missing, ", "), more)
	}
	for _, g := range gts {
		if _, ok := used[g]; !ok {
			unused = append(unused, g)
		}
	}
	return pairs, unused, nil
}
