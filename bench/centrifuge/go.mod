module github.com/heraldhq/herald/bench/centrifuge

go 1.26.0

// The source of github.com/centrifugal/centrifuge comes from Debian's
// golang-github-centrifugal-centrifuge-dev package (.ci/setup installs it).
// To build against a release from the module proxy instead, drop this line
// and run `go get github.com/centrifugal/centrifuge@VERSION`; releases after
// 0.15 changed parts of the API main.go uses.
replace github.com/centrifugal/centrifuge => /usr/share/gocode/src/github.com/centrifugal/centrifuge

replace github.com/heraldhq/herald/bench => ../

replace github.com/heraldhq/herald => ../../

require (
	github.com/centrifugal/centrifuge v0.15.0
	github.com/heraldhq/herald v0.0.0-00010101000000-000000000000
	github.com/heraldhq/herald/bench v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
)

require (
	github.com/FZambia/eagle v0.0.1 // indirect
	github.com/FZambia/sentinel v1.1.0 // indirect
	github.com/HdrHistogram/hdrhistogram-go v1.4.0 // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/centrifugal/protocol v0.3.6 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/golang-jwt/jwt/v5 v5.3.1 // indirect
	github.com/gomodule/redigo v1.8.4 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/igm/sockjs-go/v3 v3.0.0 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/mna/redisc v1.1.7 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
