package imageio

import "fmt"

// jpegScansComplete returns an error when a JPEG that image/jpeg decoded
// lacks scans. image/jpeg stops at the EOI marker and returns whatever the
// scans before it filled in, so a progressive file cut at a scan boundary
// (with an EOI marker added back, as some tools and transfers do) decodes
// without error into a blurred or discoloured picture. The rule: in a
// progressive file every coefficient (0..63) of every component must be
// sent down to the last bit (a scan covering it with Al = 0); in a
// sequential one every component must appear in a scan. Structures this
// walk does not understand are left to the decoder's verdict (nil).
func jpegScansComplete(data []byte) error {
	var (
		ids         []byte // component ids of the frame, in frame order
		progressive bool
		full        [4][64]bool // progressive: coefficient k of component c sent with Al = 0
		scanned     [4]bool     // sequential: component c appeared in a scan
	)
	index := func(id byte) int {
		for c, v := range ids {
			if v == id {
				return c
			}
		}
		return -1
	}
	i := 2 // after SOI
	for i+1 < len(data) {
		if data[i] != 0xff { // extraneous bytes, which image/jpeg skips too
			i++
			continue
		}
		m := data[i+1]
		switch {
		case m == 0xff: // fill byte
			i++
			continue
		case m == 0xd9: // EOI
			return checkCoverage(ids, progressive, &full, &scanned)
		case m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd7): // no length
			i += 2
			continue
		}
		if i+4 > len(data) {
			return nil
		}
		n := be16(data[i+2:])
		if n < 2 || i+2+n > len(data) {
			return nil
		}
		seg := data[i+4 : i+2+n]
		i += 2 + n
		switch m {
		case 0xc0, 0xc1, 0xc2: // SOF: baseline, extended, progressive
			if len(seg) < 6 || ids != nil {
				return nil
			}
			nc := int(seg[5])
			if nc < 1 || nc > 4 || len(seg) < 6+3*nc {
				return nil
			}
			for k := range nc {
				ids = append(ids, seg[6+3*k])
			}
			progressive = m == 0xc2
		case 0xda: // SOS, then entropy-coded data up to the next marker
			if len(seg) < 1 {
				return nil
			}
			ns := int(seg[0])
			if len(seg) < 4+2*ns || ids == nil {
				return nil
			}
			ss, se, al := int(seg[1+2*ns]), int(seg[2+2*ns]), seg[3+2*ns]&0x0f
			for k := range ns {
				c := index(seg[1+2*k])
				if c < 0 {
					return nil
				}
				scanned[c] = true
				if progressive && al == 0 {
					for z := ss; z <= min(se, 63); z++ {
						full[c][z] = true
					}
				}
			}
			for i+1 < len(data) && (data[i] != 0xff || data[i+1] == 0x00 || (data[i+1] >= 0xd0 && data[i+1] <= 0xd7)) {
				i++
			}
		}
	}
	return nil // no EOI: the decoder would have failed, this is not our call
}

func checkCoverage(ids []byte, progressive bool, full *[4][64]bool, scanned *[4]bool) error {
	for c := range ids {
		if !scanned[c] {
			return fmt.Errorf("%w: jpeg: truncated: component %d has no scan", ErrCorrupt, c)
		}
		if !progressive {
			continue
		}
		for z, ok := range full[c] {
			if !ok {
				return fmt.Errorf("%w: jpeg: truncated progressive image: coefficient %d of component %d never refined to full precision (scans missing)", ErrCorrupt, z, c)
			}
		}
	}
	return nil
}
