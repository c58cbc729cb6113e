package report

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Plot size: two plots side by side on a page about 1200 px wide.
const (
	plotW = 5.4 * vg.Inch
	plotH = 2.7 * vg.Inch
)

// Colours of the series, the same in every plot of the report.
var (
	colServer  = color.RGBA{0x1f, 0x77, 0xb4, 0xff} // blue
	colClients = color.RGBA{0xff, 0x7f, 0x0e, 0xff} // orange
	colLVS     = color.RGBA{0x7f, 0x7f, 0x7f, 0xff} // grey
	colOK      = color.RGBA{0x2c, 0xa0, 0x2c, 0xff} // green
	colFailed  = color.RGBA{0xd6, 0x27, 0x28, 0xff} // red
	colRST     = color.RGBA{0x94, 0x67, 0xbd, 0xff} // purple
)

// line is one series of a chart.
type line struct {
	name   string
	xs, ys []float64
	color  color.Color
	dashed bool
	dotted bool
	wide   bool
	step   bool // draw as steps (post-step)
}

// chart is one plot: a title, axes and lines.
type chart struct {
	kind         string // data-plot attribute: timewait, outcomes, server, cdf
	title        string
	xLabel       string
	yLabel       string
	lines        []line
	intY         bool // counts: integer ticks, y from 0
	logX         bool
	yMin0, yMax1 bool // a fraction axis: exactly [0, 1]
	legend       bool
	caption      string
	emptyMessage string // drawn instead when no line has a point
	xMin0        bool
}

func sansFont(size vg.Length) font.Font {
	return font.From(font.Font{Typeface: "Liberation", Variant: "Sans"}, size)
}

// logFloor is the smallest value a log-scale axis shows (1 µs in ms).
const logFloor = 1e-3

// maxLinePoints bounds a line: twlab records at most 10 min at 10 Hz plus
// 64 readings of a series per cell, and a few hundred points of a latency
// CDF. A longer line comes from a file twlab did not write, and drawing it
// would take long.
const maxLinePoints = 1 << 15

// points counts the points a chart would draw.
func (c *chart) points() int {
	n := 0
	for _, l := range c.lines {
		n += min(len(l.xs), len(l.ys))
	}
	return n
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// maxCoord bounds a coordinate on a linear axis.
const maxCoord = 1e300

func (c *chart) plot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = c.title
	p.Title.TextStyle.Font = sansFont(11)
	p.Title.Padding = 4
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		ax.Label.TextStyle.Font = sansFont(9.5)
		ax.Tick.Label.Font = sansFont(8.5)
		ax.Padding = 2
	}
	p.X.Label.Text = c.xLabel
	p.Y.Label.Text = c.yLabel
	p.Legend.TextStyle.Font = sansFont(9)
	p.Legend.Padding = 1.5
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = 4, -2
	p.Legend.ThumbnailWidth = 14
	p.Add(plotter.NewGrid())
	points, entries := 0, 0
	for _, l := range c.lines {
		if len(l.xs) == 0 {
			continue
		}
		if n := min(len(l.xs), len(l.ys)); n > maxLinePoints {
			return nil, fmt.Errorf("%s: %d points, more than twlab records for a cell (%d at most)", l.name, n, maxLinePoints)
		}
		xys := make(plotter.XYs, 0, len(l.xs))
		for i := range min(len(l.xs), len(l.ys)) {
			x, y := l.xs[i], l.ys[i]
			if !finite(x) || !finite(y) {
				continue
			}
			// Beyond ±1e300 the span of a linear axis overflows (and the
			// plotting library's tick search never ends): no reading of
			// twlab's comes near (they are int64).
			if (!c.logX && math.Abs(x) > maxCoord) || math.Abs(y) > maxCoord {
				continue
			}
			// A log axis cannot show 0 or less: a connect that took less
			// than the clock's resolution (a jiffy on old kernels, a
			// rounded sub-microsecond) is drawn at the axis floor.
			if c.logX && x < logFloor {
				x = logFloor
			}
			xys = append(xys, plotter.XY{X: x, Y: y})
		}
		if len(xys) == 0 {
			continue
		}
		pl, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", c.title, l.name, err)
		}
		pl.Color = l.color
		pl.Width = vg.Points(1.6)
		if l.dashed {
			pl.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		if l.wide {
			pl.Width = vg.Points(3.2)
		}
		if l.dotted {
			pl.Dashes = []vg.Length{vg.Points(1.2), vg.Points(2)}
			pl.Width = vg.Points(2)
		}
		if l.step {
			pl.StepStyle = plotter.PostStep
		}
		p.Add(pl)
		if len(xys) == 1 {
			// One reading draws no line: without a dot the chart looked
			// empty, its axes scaled to a value it did not show.
			dot, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", c.title, l.name, err)
			}
			dot.GlyphStyle = draw.GlyphStyle{Color: l.color, Radius: vg.Points(2.5), Shape: draw.CircleGlyph{}}
			p.Add(dot)
		}
		if c.legend {
			p.Legend.Add(l.name, pl)
			entries++
		}
		points += len(xys)
	}
	if points == 0 {
		return nil, nil
	}
	if c.xMin0 {
		// Time since the load started: the axis always shows 0, also for
		// readings a damaged file puts all before or all after it, so that
		// the ticks step through a range that includes 0.
		p.X.Min = math.Min(0, p.X.Min)
		p.X.Max = math.Max(0, p.X.Max)
		if p.X.Max == p.X.Min {
			p.X.Max = p.X.Min + 1
		}
		p.X.Tick.Marker = timeTicks{}
	}
	if c.intY {
		p.Y.Min = 0
		p.Y.Max = math.Max(p.Y.Max, 1)
		p.Y.Tick.Marker = intTicks{}
	}
	if c.yMax1 {
		p.Y.Min, p.Y.Max = 0, 1
	}
	if entries > 0 {
		// Room above the data for the legend in the top-left corner.
		rows := float64(entries)
		frac := math.Min(0.5, 0.02+0.085*rows)
		p.Y.Max = p.Y.Min + (p.Y.Max-p.Y.Min)/(1-frac)
	}
	if c.logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks{}
		// LogScale panics on a bound <= 0 and breaks on an infinite one:
		// the range stays within [logFloor/4, MaxFloat64] whatever the data.
		lo, hi := math.Max(p.X.Min, logFloor), math.Max(p.X.Max, logFloor)
		if hi/lo < 10 {
			mid := math.Sqrt(lo) * math.Sqrt(hi) // the product may overflow
			lo, hi = mid/4, mid*4
		}
		p.X.Min, p.X.Max = lo, math.Min(hi, math.MaxFloat64)
		if !(p.X.Max > p.X.Min) {
			p.X.Min = p.X.Max / 16
		}
	}
	// One value on a linear axis (a single reading, a flat series) spans
	// nothing: give it room around the value instead of no chart.
	for _, ax := range []*plot.Axis{&p.X, &p.Y} {
		if ax == &p.X && c.logX || ax.Min != ax.Max || !finite(ax.Min) {
			continue
		}
		pad := math.Max(math.Abs(ax.Min)/10, 1)
		ax.Min, ax.Max = ax.Min-pad, ax.Max+pad
	}
	if !finite(p.X.Max-p.X.Min) || !finite(p.Y.Max-p.Y.Min) || !(p.X.Max > p.X.Min) || !(p.Y.Max > p.Y.Min) {
		return nil, fmt.Errorf("no drawable range (x %g…%g, y %g…%g)", p.X.Min, p.X.Max, p.Y.Min, p.Y.Max)
	}
	return p, nil
}

var svgHead = regexp.MustCompile(`(?s)^.*?<svg width="[^"]*" height="[^"]*"`)

// strictPlots is set by tests: a panic of the plotting library is then
// raised, not turned into a note, so that fuzzing finds the data behind it.
var strictPlots bool

// svg renders the chart as an inline SVG element, or in its place a note
// that says why there is none: nothing to draw, or data it cannot be drawn
// from (run folders come from anywhere; the rest of the report stands).
func (c *chart) svg() (h template.HTML) {
	defer func() {
		if p := recover(); p != nil {
			if strictPlots {
				panic(p)
			}
			h = c.note(fmt.Sprintf("could not be drawn from this data: the plotting library failed (%v)", p))
		}
	}()
	h, err := c.render()
	if err != nil {
		return c.note("could not be drawn from this data: " + err.Error())
	}
	return h
}

// note is what stands in a chart's place.
func (c *chart) note(msg string) template.HTML {
	return template.HTML(`<div class="noplot" data-plot="` + c.kind + `"><b>` + template.HTMLEscapeString(c.title) + `</b><br>` + template.HTMLEscapeString(msg) + `</div>`)
}

// render draws the chart as an inline SVG element (no XML prolog, sized by
// CSS through its viewBox), or the chart's empty message when there is
// nothing to draw.
func (c *chart) render() (template.HTML, error) {
	p, err := c.plot()
	if err != nil {
		return "", err
	}
	if p == nil {
		msg := c.emptyMessage
		if msg == "" {
			msg = "nothing recorded"
		}
		return c.note(msg), nil
	}
	cv := vgsvg.New(plotW, plotH)
	p.Draw(draw.New(cv))
	var b bytes.Buffer
	if _, err := cv.WriteTo(&b); err != nil {
		return "", err
	}
	s := b.String()
	loc := svgHead.FindStringIndex(s)
	if loc == nil {
		return "", fmt.Errorf("%s: unexpected SVG from the plotting library", c.title)
	}
	head := `<svg class="plot" data-plot="` + c.kind + `" role="img" aria-label="` + template.HTMLEscapeString(c.title) + `"`
	s = head + s[loc[1]:]
	fig := `<figure>` + s
	if c.caption != "" {
		fig += `<figcaption>` + template.HTMLEscapeString(c.caption) + `</figcaption>`
	}
	return template.HTML(fig + `</figure>`), nil
}

// intTicks marks counts: whole numbers only, at 1, 2 or 5 × 10^k steps.
type intTicks struct{}

// maxTicks bounds every ticker's loop: with odd bounds (huge, far from 0)
// a step can vanish next to the value it is added to.
const maxTicks = 1000

func (intTicks) Ticks(min, max float64) []plot.Tick {
	if !finite(min) || !finite(max) {
		return nil
	}
	span := max - min
	if !(span > 0) || !finite(span) {
		span = 1
	}
	step := 1.0
	for k := 1.0; finite(k); k *= 10 {
		found := false
		for _, m := range []float64{1, 2, 5} {
			if span/(m*k) <= 6 {
				step, found = m*k, true
				break
			}
		}
		if found {
			break
		}
	}
	var out []plot.Tick
	for v := math.Ceil(min/step) * step; v <= max+1e-9 && len(out) < maxTicks; v += step {
		out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', 0, 64)})
	}
	return out
}

// timeTicks labels seconds at 1, 2 or 5 × 10^k steps, at most 8 labels,
// with an unlabelled tick between two labelled ones.
type timeTicks struct{}

func (timeTicks) Ticks(min, max float64) []plot.Tick {
	span := max - min
	if !finite(min) || !finite(max) || !finite(span) {
		return nil
	}
	if span <= 0 {
		return []plot.Tick{{Value: min, Label: trimFloat(min)}}
	}
	base := math.Pow(10, math.Floor(math.Log10(span))) / 10
	step := base * 100
	for _, m := range []float64{1, 2, 5, 10, 20, 50} {
		if span/(base*m) <= 8 {
			step = base * m
			break
		}
	}
	var out []plot.Tick
	for i := math.Ceil(min / step * 2); i*step/2 <= max+1e-9 && len(out) < maxTicks; i++ {
		v := i * step / 2
		label := ""
		if int64(i)%2 == 0 {
			label = trimFloat(math.Round(v*1e6) / 1e6)
		}
		out = append(out, plot.Tick{Value: v, Label: label})
	}
	return out
}

// logTicks labels powers of ten (and 2, 5 × them when the range is short)
// in plain decimals: 0.1, 1, 10 ms.
type logTicks struct{}

func (logTicks) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	if !(min > 0) || !(max > min) || !finite(max) {
		return nil
	}
	lo := math.Floor(math.Log10(min))
	hi := math.Ceil(math.Log10(max))
	decades := math.Log10(max / min)
	// Over many decades (a damaged file) only every n-th power of ten is
	// labelled, so that the labels do not overlap.
	every := math.Max(1, math.Ceil(decades/12))
	for e := lo; e <= hi; e++ {
		base := math.Pow(10, e)
		for m := 1.0; m < 10; m++ {
			v := m * base
			if v < min*(1-1e-9) || v > max*(1+1e-9) {
				continue
			}
			label := ""
			if (m == 1 && math.Mod(e, every) == 0) || (decades <= 3 && (m == 2 || m == 5)) {
				label = trimFloat(v)
			}
			out = append(out, plot.Tick{Value: v, Label: label})
		}
	}
	return out
}

func trimFloat(v float64) string {
	if a := math.Abs(v); a >= 1e9 || (a > 0 && a < 1e-6) {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	s := strconv.FormatFloat(v, 'f', 6, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
