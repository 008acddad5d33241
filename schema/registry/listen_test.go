package registry_test

import (
	"net"
	"strings"
)

func newListener(url string) (net.Listener, error) {
	return net.Listen("tcp", strings.TrimPrefix(url, "http://"))
}
