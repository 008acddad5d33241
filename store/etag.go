package store

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// multipartETag is the ETag S3 gives an object completed from parts: the hex MD5
// of the concatenated binary part ETags, then "-" and the part count. It is
// returned without quotes; compare it with unquoteETag of a server's ETag.
func multipartETag(parts []Part) (string, error) {
	h := md5.New()
	for _, p := range parts {
		raw, err := hex.DecodeString(unquoteETag(p.ETag))
		if err != nil {
			return "", fmt.Errorf("store: part %d ETag %q is not hex: %w", p.Number, p.ETag, err)
		}
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts)), nil
}

// contentETag is the quoted hex MD5 of body, the ETag S3 gives a single part.
func contentETag(body []byte) string {
	sum := md5.Sum(body)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func unquoteETag(etag string) string { return strings.Trim(etag, `"`) }

// checkParts enforces what S3 checks on CompleteMultipartUpload before it looks
// at the parts themselves: at least one part, ascending numbers in S3's range.
func checkParts(parts []Part) error {
	if len(parts) == 0 {
		return fmt.Errorf("store: complete needs at least one part")
	}
	for i, p := range parts {
		if p.Number < 1 || p.Number > 10000 {
			return fmt.Errorf("store: part number %d outside 1..10000", p.Number)
		}
		if i > 0 && p.Number <= parts[i-1].Number {
			return fmt.Errorf("store: parts must be in ascending order (part %d after %d)", p.Number, parts[i-1].Number)
		}
	}
	return nil
}
