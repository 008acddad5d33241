// Package conf holds what every part of sinkd's configuration is written
// with: the value types (Duration, Size, StringList, Location), the blocks
// that several plugins share (TLS, SASL, schema fields), and Check, which
// collects every problem of a plugin's settings with its field path.
//
// It imports no sinkd package. The plugins (sources, writers, the object
// store, the dead-letter sinks) import it for their config structs; the
// config package imports the plugins to compose the file and maps each
// problem's path to its line. A plugin never imports config.
package conf

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Issue is one problem with a setting. Path is relative to the block that
// was validated (brokers[1], sasl.username); the config package prefixes it
// with the block's place in the file and finds its line.
type Issue struct {
	Path string
	Msg  string
}

// Issues is every problem Validate found, in the order found.
type Issues []Issue

func (is Issues) Error() string {
	lines := make([]string, len(is))
	for i, p := range is {
		lines[i] = p.Msg
		if p.Path != "" {
			lines[i] = p.Path + ": " + p.Msg
		}
	}
	return strings.Join(lines, "\n")
}

// Err is nil when there are no issues: a nil Issues stored in an error
// interface would not be.
func (is Issues) Err() error {
	if len(is) == 0 {
		return nil
	}
	return is
}

// Check collects issues under a path prefix. The zero Check is ready.
type Check struct {
	prefix string
	issues *Issues
}

// At returns a Check whose paths are under prefix and whose issues join c's.
func (c *Check) At(prefix string) *Check {
	if c.issues == nil {
		c.issues = new(Issues)
	}
	return &Check{prefix: Join(c.prefix, prefix), issues: c.issues}
}

// Issues returns what was found.
func (c *Check) Issues() Issues {
	if c.issues == nil {
		return nil
	}
	return *c.issues
}

// Add appends issues found by another block's Validate, under path.
func (c *Check) Add(path string, is Issues) {
	for _, i := range is {
		c.Errorf(Join(path, i.Path), "%s", i.Msg)
	}
}

// Errorf records a problem with the setting at path ("" for the block).
func (c *Check) Errorf(path, format string, args ...any) {
	if c.issues == nil {
		c.issues = new(Issues)
	}
	*c.issues = append(*c.issues, Issue{Path: Join(c.prefix, path), Msg: fmt.Sprintf(format, args...)})
}

// Required reports a missing value and says whether it was there.
func (c *Check) Required(path, val string) bool {
	if val == "" {
		c.Errorf(path, "is required")
		return false
	}
	return true
}

// OneOf reports a value outside allowed and says whether it was inside.
func (c *Check) OneOf(path, val string, allowed ...string) bool {
	if !slices.Contains(allowed, val) {
		c.Errorf(path, "%q is not one of %s", val, strings.Join(allowed, ", "))
		return false
	}
	return true
}

// Match reports a non-empty value that re does not match; what says why.
func (c *Check) Match(path, val string, re *regexp.Regexp, what string) {
	if val != "" && !re.MatchString(val) {
		c.Errorf(path, "%q: %s", val, what)
	}
}

// HostPort reports a value that is not host:port with a port in 1..65535.
func (c *Check) HostPort(path, val string) {
	host, port, err := net.SplitHostPort(val)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || host == "" || n < 1 || n > 65535 {
		c.Errorf(path, "%q is not host:port", val)
	}
}

// ListenAddr accepts what net.Listen does: an empty host (all interfaces)
// and port 0 (any free port).
func (c *Check) ListenAddr(path, val string) {
	_, port, err := net.SplitHostPort(val)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		c.Errorf(path, "%q is not [host]:port", val)
	}
}

// HTTPURL reports a value that is not an http:// or https:// URL with a host.
func (c *Check) HTTPURL(path, val string) {
	u, err := url.Parse(val)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.Errorf(path, "%q is not an http:// or https:// URL", RedactURL(val))
	}
}

// RFC3339 reports a value that is not an RFC 3339 time.
func (c *Check) RFC3339(path, val string) {
	if _, err := time.Parse(time.RFC3339, val); err != nil {
		c.Errorf(path, "%q is not an RFC 3339 time such as 2018-01-01T00:00:00Z", val)
	}
}

// Positive reports a duration that is not above zero.
func (c *Check) Positive(path string, d Duration) {
	if d <= 0 {
		c.Errorf(path, "must be a positive duration, got %s", d)
	}
}

// AtLeast reports a count below low.
func (c *Check) AtLeast(path string, val, low int) {
	if val < low {
		c.Errorf(path, "must be at least %d, got %d", low, val)
	}
}

// AtLeastSize reports a size below low.
func (c *Check) AtLeastSize(path string, val, low Size) {
	if val < low {
		c.Errorf(path, "must be at least %s, got %s", low, val)
	}
}

// Join joins YAML path parts: Join("a", "b") is a.b, Join("a", "[0]") is a[0].
func Join(parent, key string) string {
	switch {
	case parent == "":
		return key
	case key == "":
		return parent
	case strings.HasPrefix(key, "["):
		return parent + key
	}
	return parent + "." + key
}

// RedactURL hides a password in a URL's user information.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return "xxxxx" + s[i:]
	}
	return s
}

// Index is a list item's path suffix: Index(2) is [2].
func Index(i int) string { return "[" + strconv.Itoa(i) + "]" }
