module github.com/heraldhq/herald/bench

go 1.26.0

replace github.com/heraldhq/herald => ../

require (
	github.com/dolthub/maphash v0.1.0 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/klauspost/compress v1.17.9 // indirect
	github.com/lxzan/gws v1.8.9 // indirect
)
