package degrade

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Component is one degradation model of a Mixture with its share of the
// pairs. Name says where Options came from (a file, or DefaultName) and
// is recorded in each pair's sidecar.
type Component struct {
	Name    string   `json:"name"`
	Weight  float64  `json:"weight"`
	Options *Options `json:"options"`
}

// DefaultName names DefaultOptions in a mixture spec.
const DefaultName = "realesrgan"

// Mixture draws each pair's degradation from one of several models.
// Real-ESRGAN's second-order model alone is harsher than most camera
// captures (RealSR's, for one); a student trained only on it learns to
// remove degradations a mild input does not have and oversmooths it, so a
// share of milder pairs keeps fidelity on real photos. All components
// share the scale and the crop, so the batches keep one shape.
type Mixture []Component

// Validate reports the first component that cannot be sampled or whose
// shape differs from the first one's.
func (m Mixture) Validate() error {
	if len(m) == 0 {
		return errors.New("degrade: empty mixture")
	}
	for i, c := range m {
		if !(c.Weight > 0) || c.Options == nil {
			return fmt.Errorf("degrade: mixture component %d (%s): want a positive weight and options", i, c.Name)
		}
		if err := c.Options.Validate(); err != nil {
			return fmt.Errorf("degrade: mixture component %d (%s): %w", i, c.Name, err)
		}
		if c.Options.Scale != m[0].Options.Scale || c.Options.Crop != m[0].Options.Crop {
			return fmt.Errorf("degrade: mixture component %d (%s): scale and crop differ from component 0's", i, c.Name)
		}
	}
	return nil
}

// Choose returns the index of the component for u drawn uniformly in
// [0, 1): components own consecutive intervals of u in proportion to
// their weights.
func (m Mixture) Choose(u float64) int {
	total := 0.0
	for _, c := range m {
		total += c.Weight
	}
	acc := 0.0
	for i, c := range m {
		acc += c.Weight
		if u*total < acc {
			return i
		}
	}
	return len(m) - 1
}

// ParseComponent reads "FILE[:WEIGHT]" (weight 1 when left out): FILE is
// a LoadOptions JSON file, or DefaultName for DefaultOptions.
func ParseComponent(spec string) (Component, error) {
	name, w := spec, 1.0
	if i := strings.LastIndexByte(spec, ':'); i >= 0 {
		v, err := strconv.ParseFloat(spec[i+1:], 64)
		if err != nil || !(v > 0) {
			return Component{}, fmt.Errorf("degrade: %q: the weight after ':' must be a positive number", spec)
		}
		name, w = spec[:i], v
	}
	if name == "" {
		return Component{}, fmt.Errorf("degrade: %q: no options file", spec)
	}
	c := Component{Name: name, Weight: w}
	if name == DefaultName {
		c.Options = DefaultOptions()
		return c, nil
	}
	o, err := LoadOptions(name)
	if err != nil {
		return Component{}, err
	}
	c.Options = o
	return c, nil
}

// String lists the components as specs ("a.json:3 realesrgan:1"); the
// empty mixture is DefaultName, what a loader without one uses.
func (m Mixture) String() string {
	if len(m) == 0 {
		return DefaultName
	}
	parts := make([]string, len(m))
	for i, c := range m {
		parts[i] = c.Name + ":" + strconv.FormatFloat(c.Weight, 'g', -1, 64)
	}
	return strings.Join(parts, " ")
}
