package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// SVG draws TTFT p90 per workload (rows) and strategy (bars), log scale;
// repeated cells show their median.
func (r *Report) SVG() string {
	var strategies []string
	var workloads []string
	for _, c := range r.Cells {
		if !slices.Contains(strategies, c.Strategy) {
			strategies = append(strategies, c.Strategy)
		}
		if !slices.Contains(workloads, c.Workload) {
			workloads = append(workloads, c.Workload)
		}
	}
	const (
		left, top, barH, gap, width = 150.0, 40.0, 14.0, 18.0, 560.0
	)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, c := range r.Cells {
		if v := c.Summary.TTFT.P90; v > 0 {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0.01, 1
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	x := func(v float64) float64 {
		v = max(v, lo)
		return left + width*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	colors := []string{"#9e9e9e", "#bcaaa4", "#90caf9", "#ffb74d", "#ab47bc", "#2e7d32", "#66bb6a", "#a5d6a7", "#000000", "#8d6e63", "#4db6ac"}
	height := top + float64(len(workloads))*(float64(len(strategies))*barH+gap) + 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", left+width+40, height)
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14">TTFT p90 (simulated seconds, log scale) per workload and strategy</text>`+"\n", left)
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/><text x="%.1f" y="%.0f" text-anchor="middle">%g s</text>`+"\n",
			x(d), top-5, x(d), height-45, x(d), height-30, d)
	}
	y := top
	for _, w := range workloads {
		fmt.Fprintf(&b, `<text x="5" y="%.0f" font-weight="bold">%s</text>`+"\n", y+barH, w)
		for i, s := range strategies {
			if r.cell(w, s) != nil {
				v := r.value(w, s, ttftP90.get) // the median over runs
				fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.1f" height="%.0f" fill="%s"/><text x="%.1f" y="%.0f">%s %s</text>`+"\n",
					left, y, max(x(v)-left, 1), barH-2, colors[i%len(colors)], x(v)+3, y+barH-4, s, secs(v))
			}
			y += barH
		}
		y += gap
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// RatioSVG draws ours / the best baseline per workload for each matrix
// metric, log scale around 1, with the targets marked: latency ratios
// (lower is better) left of 1 are wins, throughput ratios right of 1.
func (r *Report) RatioSVG() string {
	const left, top, barH, gap, width = 180.0, 40.0, 12.0, 14.0, 520.0
	type row struct {
		workload string
		cmp      []*Comparison
	}
	var rows []row
	for i := range r.Scenarios {
		w := r.Scenarios[i].Workload.Name
		if r.cell(w, oursName) == nil {
			continue
		}
		cmp, _ := r.Matrix(w)
		rows = append(rows, row{w, cmp})
	}
	lo, hi := 0.25, 4.0
	for _, rw := range rows {
		for _, c := range rw.cmp {
			if c != nil && c.Ratio > 0 && !math.IsInf(c.Ratio, 0) {
				lo, hi = min(lo, c.Ratio), max(hi, c.Ratio)
			}
		}
	}
	lo = math.Pow(2, math.Floor(math.Log2(lo)))
	hi = math.Pow(2, math.Ceil(math.Log2(hi)))
	x := func(v float64) float64 {
		v = min(max(v, lo), hi)
		return left + width*(math.Log2(v)-math.Log2(lo))/(math.Log2(hi)-math.Log2(lo))
	}
	colors := []string{"#1565c0", "#64b5f6", "#ef6c00", "#2e7d32"}
	height := top + float64(len(rows))*(float64(len(matrixMetrics))*barH+gap) + 70
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", left+width+120, height)
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14">ours / best baseline per workload (log scale; targets: latency ≤ 1.05×, throughput ≥ 0.95×)</text>`+"\n", 5.0)
	for d := lo; d <= hi*1.0001; d *= 2 {
		stroke := "#ddd"
		if d == 1 {
			stroke = "#555"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s"/><text x="%.1f" y="%.0f" text-anchor="middle">%g×</text>`+"\n",
			x(d), top-5, x(d), height-55, stroke, x(d), height-40, d)
	}
	y := top
	for _, rw := range rows {
		fmt.Fprintf(&b, `<text x="5" y="%.0f" font-weight="bold">%s</text>`+"\n", y+barH, rw.workload)
		for i, c := range rw.cmp {
			if c != nil && !math.IsNaN(c.Ratio) {
				x0, x1 := x(1), x(c.Ratio)
				fill := colors[i%len(colors)]
				if !c.Met() {
					fill = "#c62828"
				}
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="%s"/><text x="%.1f" y="%.0f">%s %.2f×</text>`+"\n",
					min(x0, x1), y, max(math.Abs(x1-x0), 1), barH-2, fill, max(x0, x1)+3, y+barH-3, c.Metric, c.Ratio)
			}
			y += barH
		}
		y += gap
	}
	fmt.Fprintf(&b, `<text x="5" y="%.0f">red: target missed. Bars left of 1× on latency and right of 1× on throughput are better than the best baseline.</text>`+"\n", height-15)
	b.WriteString("</svg>\n")
	return b.String()
}
