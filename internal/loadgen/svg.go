package loadgen

import (
	"fmt"
	"io"
	"strings"
)

// WriteSVG draws the run's series as two stacked charts, deliveries per
// second and latency (p50, p99) over time, in a self-contained SVG.
func WriteSVG(w io.Writer, title string, series []Point) error {
	const (
		width, height = 800, 520
		left, right   = 80, 20
		chartH        = 190
		top1, top2    = 50, 300
	)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="24" font-size="15">%s</text>`+"\n", left, xmlEscape(title))
	tMax := 1.0
	dMax, lMax := 1.0, 1.0
	for _, p := range series {
		tMax = max(tMax, p.T)
		dMax = max(dMax, p.Deliveries)
		lMax = max(lMax, p.P99)
	}
	plotW := float64(width - left - right)
	chart := func(top int, label string, yMax float64, lines []struct {
		color string
		y     func(Point) float64
	}) {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%d" fill="none" stroke="#888"/>`+"\n", left, top, plotW, chartH)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left, top-6, xmlEscape(label))
		for i := 0; i <= 4; i++ {
			v := yMax * float64(i) / 4
			y := float64(top+chartH) - float64(chartH)*float64(i)/4
			fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`+"\n", left-6, y+4, shortNum(v))
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="end">%.0fs</text>`+"\n", float64(left)+plotW, top+chartH+16, tMax)
		for _, l := range lines {
			var pts []string
			for _, p := range series {
				x := float64(left) + plotW*p.T/tMax
				y := float64(top+chartH) - float64(chartH)*min(l.y(p)/yMax, 1)
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", l.color, strings.Join(pts, " "))
		}
	}
	type line = struct {
		color string
		y     func(Point) float64
	}
	chart(top1, "deliveries per second", dMax, []line{{"#1f77b4", func(p Point) float64 { return p.Deliveries }}})
	chart(top2, "latency ms: p50 (green), p99 (red)", lMax, []line{
		{"#2ca02c", func(p Point) float64 { return p.P50 }},
		{"#d62728", func(p Point) float64 { return p.P99 }},
	})
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
