package report

import "html/template"

var pageTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
:root { --ok: #e3f4e1; --ok-b: #2c8a2c; --bad: #fbe0df; --bad-b: #c62828; --na: #eeeeee; --na-b: #777; --warn: #fff1cc; --some: #ffe6b3; --ink: #1d232b; --muted: #5c6670; --line: #d9dde2; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "Liberation Sans", Arial, sans-serif; color: var(--ink); margin: 0; background: #fafbfc; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 10px; }
h3 { font-size: 15px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
code { font: 13px/1.4 ui-monospace, "Liberation Mono", Menlo, monospace; }
.meta { color: var(--muted); margin: 0; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 10px; font-size: 13px; font-weight: 600; vertical-align: middle; border: 1px solid; }
.badge.ok { background: var(--ok); border-color: var(--ok-b); color: #1b5e20; }
.badge.failed { background: var(--bad); border-color: var(--bad-b); color: #8e1b1b; }
.badge.na, .badge.other { background: var(--na); border-color: var(--na-b); color: #444; }
.about { background: #fff; border: 1px solid var(--line); border-left: 4px solid #1f77b4; padding: 8px 18px; border-radius: 4px; }
.about p { margin: 8px 0; }
/* a long word (a path, a hash) wraps instead of widening the page */
.about, .reason, li { overflow-wrap: anywhere; }
.facts { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; font-size: 13px; }
th small { display: block; font-weight: 400; color: var(--muted); }
table.matrix td { font-variant-numeric: tabular-nums; white-space: nowrap; }
table.matrix td.num, table.counters td.num { text-align: right; }
table.matrix tr.ok td.status { background: var(--ok); color: #1b5e20; font-weight: 600; }
table.matrix tr.failed td.status { background: var(--bad); color: #8e1b1b; font-weight: 600; }
table.matrix tr.na td { color: #888; background: #f6f6f6; }
table.matrix tr.na td.status { background: var(--na); }
td.good { background: var(--ok); }
td.some { background: var(--some); }
td.bad { background: var(--bad); }
td.warn { background: var(--warn); }
.legend { font-size: 13px; color: var(--muted); }
.legend span { display: inline-block; width: 12px; height: 12px; border: 1px solid #bbb; vertical-align: -1px; margin: 0 3px 0 10px; }
section.cell { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 4px 20px 16px; margin: 22px 0; }
section.cell.ok { border-top: 4px solid var(--ok-b); }
section.cell.failed { border-top: 4px solid var(--bad-b); }
section.cell.na { border-top: 4px solid var(--na-b); }
section.cell h2 { margin-top: 14px; font-size: 18px; }
section.cell h2 .num { color: var(--muted); font-weight: 400; }
.reason { font-weight: 600; }
.why ul { margin: 4px 0; padding-left: 20px; }
.why li { margin: 3px 0; }
dl.figures { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; font-size: 14px; }
dl.figures dt { color: var(--muted); }
dl.figures dd { margin: 0; font-variant-numeric: tabular-nums; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; margin: 10px 0; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 4px; padding: 4px; background: #fff; }
figure svg { width: 100%; height: auto; display: block; }
svg.plot text { font-family: "Liberation Sans", Arimo, Arial, Helvetica, sans-serif !important; }
figcaption { font-size: 13px; color: var(--muted); padding: 2px 6px 4px; }
.noplot { border: 1px dashed var(--line); border-radius: 4px; padding: 40px 16px; color: var(--muted); text-align: center; font-size: 13px; }
table.counters { font-size: 13px; width: 100%; }
table.counters td:first-child { white-space: nowrap; }
table.counters td.meaning { color: #333; }
table.expect td.ok { color: #1b5e20; }
table.expect td.failed { color: #8e1b1b; font-weight: 600; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--muted); }
.knobs { font-size: 12px; color: var(--muted); word-break: break-all; }
footer { color: var(--muted); font-size: 13px; margin-top: 32px; }
.problems { background: var(--warn); border: 1px solid #e0b84c; border-radius: 4px; padding: 4px 18px; margin-top: 16px; }
</style>
</head>
<body>
<main>
<header>
<h1>{{.Scenario}} <span class="badge {{.StatusClass}}">{{.Status}}</span></h1>
<p class="meta">kernel <b>{{.Kernel}}</b> · run {{.RunID}} · started {{.Started}}{{if .Duration}} · took {{.Duration}}{{end}} · {{.Host}} · scenario file <code>{{.ScenarioFile}}</code>{{if .Overrides}} · overrides <code>{{.Overrides}}</code>{{end}}{{if .Only}} · only <code>{{.Only}}</code>{{end}}</p>
{{if .RunNote}}<p class="runnote">{{.RunNote}}</p>{{end}}
</header>
{{if .Problems}}<section id="problems" class="problems">
<h2>What could not be read</h2>
<p>This run folder is not as twlab writes it (damaged, edited or truncated): what follows leaves out what could not be read.</p>
<ul>{{range .Problems}}<li>{{.}}</li>{{end}}</ul>
</section>
{{end}}
<section id="about">
<h2>What this scenario demonstrates</h2>
<div class="about">
{{range .Description}}<p>{{.}}</p>
{{else}}<p>The scenario has no description.</p>{{end}}
</div>
{{if .Facts}}<p class="facts">Detected on this kernel: {{range $i, $f := .Facts}}{{if $i}} · {{end}}{{$f}}{{end}}</p>{{end}}
</section>

<section id="matrix">
<h2>The matrix</h2>
<p class="legend">Each row is one cell: a fresh lab with the knobs shown. Status:<span style="background:var(--ok)"></span>every expectation held<span style="background:var(--bad)"></span>an expectation failed or the cell broke<span style="background:var(--na)"></span>n/a on this kernel. Connections:<span style="background:var(--ok)"></span>all succeeded<span style="background:var(--some)"></span>some failed<span style="background:var(--bad)"></span>half or more failed<span style="background:var(--warn)"></span>SYNs unanswered / PAWS rejects seen.</p>
<table class="matrix">
<thead><tr><th>#</th>{{range .Keys}}<th title="{{.Full}}">{{.Short}}{{if .Role}}<small>{{.Role}}</small>{{end}}</th>{{end}}<th>status</th><th>ok / conns</th><th>failures</th><th>p50 ms</th><th>p99 ms</th><th>SYNs in</th><th>unanswered</th><th>server PAWS</th><th>server TW max</th><th>expect</th></tr></thead>
<tbody>
{{range $i, $r := .Rows}}<tr class="{{$r.StatusClass}}" data-cell="{{$r.ID}}"><td><a href="#{{$r.Anchor}}">{{$r.Num}}</a></td>{{range $r.Knobs}}<td>{{.}}</td>{{end}}<td class="status">{{$r.Status}}</td><td class="num {{$r.ConnsClass}}">{{$r.Conns}}</td><td>{{$r.Fail}}</td><td class="num">{{$r.P50}}</td><td class="num">{{$r.P99}}</td><td class="num">{{$r.SYNIn}}</td><td class="num {{$r.UnansClass}}">{{$r.Unans}}</td><td class="num {{$r.PAWSClass}}">{{$r.PAWS}}</td><td class="num">{{$r.TWMax}}</td><td>{{$r.Expect}}</td></tr>
{{end}}</tbody>
</table>
</section>

{{if .Failed}}<section id="failed">
<h2>What failed</h2>
<ul>{{range .Failed}}<li>{{.}}</li>{{end}}</ul>
</section>{{end}}

<h2>The cells</h2>
{{range .Cells}}<section class="cell {{.StatusClass}}" id="{{.Anchor}}" data-cell="{{.ID}}" data-status="{{.Status}}">
<h2><span class="num">Cell {{.Num}}</span> <code>{{.ID}}</code> <span class="badge {{.StatusClass}}">{{.Status}}</span></h2>
{{if .Reason}}<p class="reason">{{.Reason}}</p>{{end}}
{{if .Notes}}<div class="why"><h3>What happened</h3><ul>{{range .Notes}}<li>{{.}}</li>{{end}}</ul></div>{{end}}
{{if .Figures}}<dl class="figures">{{range .Figures}}<dt>{{.Name}}</dt><dd>{{.Value}}</dd>{{end}}</dl>{{end}}
{{if .Plots}}<div class="plots">{{range .Plots}}{{.}}{{end}}</div>{{end}}
{{if .Expect}}<h3>Expectations</h3>
<table class="expect"><thead><tr><th>assertion</th><th>measured</th><th>wanted</th><th>result</th></tr></thead><tbody>
{{range .Expect}}<tr><td><code>{{.Expr}}</code>{{if .Name}}<br><small>{{.Name}}</small>{{end}}</td><td>{{.Value}}</td><td>{{.Bound}}</td>{{if .OK}}<td class="ok">held</td>{{else}}<td class="failed">FAILED{{if .Error}}: {{.Error}}{{end}}</td>{{end}}</tr>
{{end}}</tbody></table>{{end}}
{{if or .Story .SYN}}<h3>Counters that moved</h3>
<table class="counters"><thead><tr><th>counter</th><th>server</th><th>clients</th><th>lvs</th><th>meaning</th></tr></thead><tbody>
{{range .SYN}}<tr><td><code>{{.Name}}</code></td><td class="num">{{.Server}}</td><td></td><td></td><td class="meaning">{{.Meaning}} (nftables counter in the server's namespace)</td></tr>
{{end}}{{range .Story}}<tr><td><code>{{.Name}}</code></td><td class="num">{{.Server}}</td><td class="num">{{.Clients}}</td><td class="num">{{.LVS}}</td><td class="meaning">{{.Meaning}}</td></tr>
{{end}}</tbody></table>{{end}}
{{if .Other}}<details><summary>{{len .Other}} other counters moved</summary>
<table class="counters"><thead><tr><th>counter</th><th>server</th><th>clients</th><th>lvs</th><th>meaning</th></tr></thead><tbody>
{{range .Other}}<tr><td><code>{{.Name}}</code></td><td class="num">{{.Server}}</td><td class="num">{{.Clients}}</td><td class="num">{{.LVS}}</td><td class="meaning">{{.Meaning}}</td></tr>
{{end}}</tbody></table></details>{{end}}
{{if .Knobs}}<p class="knobs">Knobs in force: {{.Knobs}}</p>{{end}}{{range .NotListed}}<p class="knobs">{{.}}</p>{{end}}
</section>
{{end}}
<footer>Written by {{if .Tool}}{{.Tool}}{{else}}twlab{{end}} from <code>run.json</code>{{if .Timeseries}} and <code>{{.Timeseries}}</code> (sampled every 100 ms){{end}}. Counters are deltas over each cell, read from the nodes' /proc/net/netstat and /proc/net/snmp; "clients" is the sum over all clients. <code>twlab report DIR</code> writes this page again from the run folder. It loads nothing from the network.</footer>
</main>
</body>
</html>
`))
