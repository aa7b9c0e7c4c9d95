package imageio

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
)

// softwareHead is how much of a file ReadSoftware reads: the marks of
// EncodeOptions.Software sit right after the header.
const softwareHead = 64 << 10

// ReadSoftware returns the Software text of the PNG or JPEG at path (as
// EncodeOptions.Software records it: a PNG tEXt "Software" chunk before the
// image data, the first JPEG comment before the first scan), or "" when
// there is none. It reads at most the first 64 KiB, of regular files only.
func ReadSoftware(path string) (string, error) {
	if st, err := os.Stat(path); err != nil {
		return "", err
	} else if err := checkRegular(st); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return "", err
	} else if err := checkRegular(st); err != nil {
		return "", err
	}
	head, err := io.ReadAll(io.LimitReader(f, softwareHead))
	if err != nil {
		return "", err
	}
	return software(head), nil
}

// software finds the Software mark in the first bytes of a file.
func software(b []byte) string {
	switch {
	case bytes.HasPrefix(b, pngSig):
		for i := len(pngSig); i+8 <= len(b); {
			n := int(binary.BigEndian.Uint32(b[i:]))
			typ := string(b[i+4 : i+8])
			if typ == "IDAT" || n < 0 || i+12+n > len(b) {
				return ""
			}
			if v, ok := bytes.CutPrefix(b[i+8:i+8+n], []byte("Software\x00")); ok && typ == "tEXt" {
				return string(v)
			}
			i += 12 + n
		}
	case bytes.HasPrefix(b, []byte{0xff, 0xd8}):
		for i := 2; i+4 <= len(b) && b[i] == 0xff; {
			m := b[i+1]
			if m == 0xda || m == 0xd9 {
				return ""
			}
			n := be16(b[i+2:])
			if n < 2 || i+2+n > len(b) {
				return ""
			}
			if m == 0xfe {
				return string(b[i+4 : i+2+n])
			}
			i += 2 + n
		}
	}
	return ""
}
