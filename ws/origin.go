package ws

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// checkOrigin applies the Origin policy of opts to a request for host
// with the given Origin header values (RFC 6455 §4.2.2 step 4, §10.2);
// req is what opts.CheckOrigin is called with. Without CheckOrigin it allows requests without an Origin
// header (non-browser clients), origins whose host[:port] equals the
// request's Host, and origins matching one of OriginPatterns, all compared
// case-insensitively. An invalid pattern is a configuration error, reported
// so the caller can see it.
func checkOrigin(host string, origin []string, req *http.Request, opts *AcceptOptions) (bool, error) {
	if opts.CheckOrigin != nil {
		return opts.CheckOrigin(req), nil
	}
	if len(origin) == 0 {
		return true, nil
	}
	if len(origin) > 1 {
		return false, nil
	}
	u, err := url.Parse(origin[0])
	if err != nil || u.Host == "" {
		return false, nil // includes the opaque origin "null"
	}
	if strings.EqualFold(u.Host, host) {
		return true, nil
	}
	originHost := strings.ToLower(u.Host)
	for _, pattern := range opts.OriginPatterns {
		ok, err := path.Match(strings.ToLower(pattern), originHost)
		if err != nil {
			return false, fmt.Errorf("ws: origin pattern %q: %w", pattern, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}
