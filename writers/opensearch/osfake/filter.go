package osfake

import (
	"net/http"
	"path"
	"strings"
)

// filterWriter applies OpenSearch's response filtering (the filter_path
// parameter every REST endpoint accepts) to the JSON answers of one request.
type filterWriter struct {
	http.ResponseWriter
	paths [][]string
}

// parseFilterPath reads filter_path: comma-separated dotted paths whose
// segments may hold * wildcards, and ** for any number of levels. Exclusions
// ("-path") are not supported by the fake, which says so instead of guessing.
func parseFilterPath(v string) ([][]string, string) {
	var paths [][]string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			continue
		case strings.HasPrefix(p, "-"):
			return nil, "osfake: exclusive filter_path [" + p + "] is not supported"
		}
		paths = append(paths, strings.Split(p, "."))
	}
	return paths, ""
}

// filterJSON keeps the parts of v that a path names, as OpenSearch does:
// arrays are looked through, objects left empty disappear, and an answer
// with nothing left is {}.
func filterJSON(v any, paths [][]string) any {
	if out, ok := filterValue(v, paths); ok {
		return out
	}
	return map[string]any{}
}

func filterValue(v any, paths [][]string) (any, bool) {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, child := range v {
			if keep, ok := filterChild(k, child, paths); ok {
				out[k] = keep
			}
		}
		return out, len(out) > 0
	case map[string]int:
		generic := make(map[string]any, len(v))
		for k, n := range v {
			generic[k] = n
		}
		return filterValue(generic, paths)
	case []any:
		var out []any
		for _, e := range v {
			if keep, ok := filterValue(e, paths); ok {
				out = append(out, keep)
			}
		}
		return out, len(out) > 0
	}
	return nil, false // a scalar where the paths go deeper
}

// filterChild decides for the member k of an object: kept whole when a path
// ends at it, filtered by the rest of the paths that go through it.
func filterChild(k string, child any, paths [][]string) (any, bool) {
	var next [][]string
	for _, p := range paths {
		if p[0] == "**" {
			next = append(next, p) // ** goes on matching deeper levels
			if len(p) == 1 {
				return child, true
			}
			if ok, _ := path.Match(p[1], k); ok {
				if len(p) == 2 {
					return child, true
				}
				next = append(next, p[2:])
			}
			continue
		}
		if ok, _ := path.Match(p[0], k); !ok {
			continue
		}
		if len(p) == 1 {
			return child, true
		}
		next = append(next, p[1:])
	}
	if len(next) == 0 {
		return nil, false
	}
	return filterValue(child, next)
}
