package osfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sigv4Verifier checks AWS Signature Version 4 from first principles (the
// canonical request of AWS's documentation), independently of the SDK's signer
// that the client uses, so that a canonicalisation bug cannot cancel out.
type sigv4Verifier struct {
	accessKey, secretKey, region, service string
	now                                   func() time.Time
}

const (
	msgSignatureMismatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgMissingAuth       = "Missing Authentication Token"
	maxClockSkew         = 5 * time.Minute
)

// verify returns 0 for a valid request, or the status and message to answer.
func (v *sigv4Verifier) verify(r *http.Request, body []byte) (int, string) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return http.StatusForbidden, msgMissingAuth
	}
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return http.StatusForbidden, "Authorization header requires the AWS4-HMAC-SHA256 algorithm"
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = val
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 5 || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return http.StatusForbidden, "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters"
	}
	if cred[0] != v.accessKey {
		return http.StatusForbidden, "The security token included in the request is invalid."
	}
	if cred[2] != v.region || cred[3] != v.service || cred[4] != "aws4_request" {
		return http.StatusForbidden, "Credential should be scoped to a valid region and service: expected " + v.region + "/" + v.service
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || t.Format("20060102") != cred[1] {
		return http.StatusForbidden, "Authorization header requires an X-Amz-Date matching the credential scope date"
	}
	if d := v.now().Sub(t); d > maxClockSkew || d < -maxClockSkew {
		return http.StatusForbidden, "Signature expired: " + amzDate + " is now earlier than the allowed window"
	}
	sum := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(sum[:])
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case payloadHash == "" && v.service == "aoss":
		return http.StatusForbidden, "Missing X-Amz-Content-Sha256 header: OpenSearch Serverless requires the payload hash"
	case payloadHash == "":
		payloadHash = bodyHash
	case payloadHash != bodyHash:
		return http.StatusBadRequest, "The provided 'x-amz-content-sha256' header does not match what was computed."
	}

	signed := strings.Split(fields["SignedHeaders"], ";")
	if !contains(signed, "host") {
		return http.StatusForbidden, "'Host' must be a signed header"
	}
	var canon strings.Builder
	canon.WriteString(r.Method + "\n")
	canon.WriteString(canonicalPath(r.URL) + "\n")
	canon.WriteString(canonicalQuery(r.URL.Query()) + "\n")
	for _, h := range signed {
		canon.WriteString(h + ":" + headerValue(r, h) + "\n")
	}
	canon.WriteString("\n" + fields["SignedHeaders"] + "\n" + payloadHash)

	scope := strings.Join(cred[1:], "/")
	crHash := sha256.Sum256([]byte(canon.String()))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crHash[:])
	key := []byte("AWS4" + v.secretKey)
	for _, part := range cred[1:] {
		key = hmacSHA256(key, part)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return http.StatusForbidden, msgSignatureMismatch
	}
	return 0, ""
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func headerValue(r *http.Request, name string) string {
	switch name {
	case "host":
		return r.Host
	case "content-length":
		return strconv.FormatInt(r.ContentLength, 10)
	}
	vals := r.Header.Values(name)
	for i, val := range vals {
		vals[i] = strings.Join(strings.Fields(val), " ")
	}
	return strings.Join(vals, ",")
}

// canonicalPath encodes each segment once, as services other than S3 expect
// after their own decoding of the request path.
func canonicalPath(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		dec, err := url.PathUnescape(s)
		if err != nil {
			dec = s
		}
		segs[i] = uriEncode(dec)
	}
	return strings.Join(segs, "/")
}

func canonicalQuery(q url.Values) string {
	var pairs []string
	for k, vals := range q {
		for _, v := range vals {
			pairs = append(pairs, uriEncode(k)+"="+uriEncode(v))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

// uriEncode is SigV4's encoding: everything but unreserved characters as %XX.
func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return b.String()
}
