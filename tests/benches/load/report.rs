//! The results: a markdown table and a hand-written SVG chart.

use std::fmt::Write as _;

/// One row of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) section: String,
    pub(crate) mode: String,
    pub(crate) clients: usize,
    pub(crate) variant: String,
    pub(crate) rate: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Against the bare server of the same cell; `None` for the bare row itself.
    pub(crate) ratio: Option<f64>,
    pub(crate) cpu_us: f64,
    pub(crate) failures: u64,
    pub(crate) notes: String,
}

fn fmt_rate(r: f64) -> String {
    let r = r.round() as u64;
    if r >= 1000 {
        format!("{},{:03}", r / 1000, r % 1000)
    } else {
        r.to_string()
    }
}

fn fmt_us(us: f64) -> String {
    if !us.is_finite() {
        "–".to_owned()
    } else if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// The markdown table of `rows`.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| section | mode | clients | variant | calls/s | p50 | p99 | ratio to bare | server CPU µs/call | failures | notes |\n",
    );
    out.push_str("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n");
    for r in rows {
        let ratio = r.ratio.map_or("–".to_owned(), |x| format!("{x:.3}"));
        let cpu = if r.cpu_us.is_finite() {
            format!("{:.1}", r.cpu_us)
        } else {
            "–".to_owned()
        };
        let failures = if r.failures == 0 {
            "0".to_owned()
        } else {
            format!("**{} FAILED**", r.failures)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.section,
            r.mode,
            r.clients,
            r.variant,
            fmt_rate(r.rate),
            fmt_us(r.p50_us),
            fmt_us(r.p99_us),
            ratio,
            cpu,
            failures,
            r.notes
        );
    }
    out
}

/// One panel of the chart.
#[derive(Debug)]
pub(crate) struct Panel {
    pub(crate) title: String,
    pub(crate) x_labels: Vec<String>,
    /// `(name, values per x label)`.
    pub(crate) series: Vec<(String, Vec<Option<f64>>)>,
    /// Bars instead of lines.
    pub(crate) bars: bool,
}

const COLORS: [&str; 6] = [
    "#4e79a7", "#e15759", "#f28e2b", "#76b7b2", "#59a14f", "#b07aa1",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound for an axis whose data reaches `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if step * magnitude >= max {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// An SVG of `panels` side by side (wrapping after three), with `title` and `footer`.
pub(crate) fn svg(title: &str, footer: &str, panels: &[Panel]) -> String {
    let (pw, ph) = (380.0, 300.0);
    let per_row = 3usize;
    let rows = panels.len().div_ceil(per_row).max(1);
    let cols = panels.len().clamp(1, per_row);
    let width = 20.0 + cols as f64 * (pw + 20.0);
    let height = 50.0 + rows as f64 * (ph + 30.0) + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="20" y="28" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, panel) in panels.iter().enumerate() {
        let ox = 20.0 + (i % per_row) as f64 * (pw + 20.0);
        let oy = 50.0 + (i / per_row) as f64 * (ph + 30.0);
        draw_panel(&mut s, panel, ox, oy, pw, ph);
    }
    let _ = writeln!(
        s,
        r##"<text x="20" y="{}" fill="#555">{}</text>"##,
        height - 12.0,
        escape(footer)
    );
    s.push_str("</svg>\n");
    s
}

fn draw_panel(s: &mut String, panel: &Panel, ox: f64, oy: f64, pw: f64, ph: f64) {
    // Plot area inside the panel.
    let (left, right, top, bottom) = (ox + 60.0, ox + pw - 10.0, oy + 30.0, oy + ph - 90.0);
    let max = panel
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let ymax = nice_max(max);
    let y = |v: f64| bottom - (v / ymax) * (bottom - top);
    let n = panel.x_labels.len().max(1);
    let slot = (right - left) / n as f64;
    let x = |i: usize| left + slot * (i as f64 + 0.5);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
        ox + 10.0,
        oy + 16.0,
        escape(&panel.title)
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{right}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            left - 4.0,
            yy + 4.0,
            fmt_rate(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/><line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" transform="rotate(-90 {:.1} {:.1})" text-anchor="middle" fill="#555">calls/s</text>"##,
        ox + 12.0,
        (top + bottom) / 2.0,
        ox + 12.0,
        (top + bottom) / 2.0
    );
    for (i, label) in panel.x_labels.iter().enumerate() {
        // Long labels are slanted so neighbours do not overlap.
        let (lx, ly) = (x(i), bottom + 16.0);
        let (anchor, rotate) = if label.len() * 7 > slot as usize {
            (
                "end",
                format!(r#" transform="rotate(-25 {lx:.1} {ly:.1})""#),
            )
        } else {
            ("middle", String::new())
        };
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="{anchor}"{rotate}>{}</text>"#,
            escape(label)
        );
    }
    let ns = panel.series.len().max(1);
    for (k, (name, values)) in panel.series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        if panel.bars {
            let bw = slot * 0.8 / ns as f64;
            for (i, v) in values.iter().enumerate() {
                let Some(v) = v else { continue };
                let bx = x(i) - slot * 0.4 + bw * k as f64;
                let _ = writeln!(
                    s,
                    r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}: {}</title></rect>"#,
                    y(*v),
                    bw - 1.0,
                    bottom - y(*v),
                    escape(name),
                    fmt_rate(*v)
                );
            }
        } else {
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
            for (i, v) in values.iter().enumerate() {
                let Some(v) = v else { continue };
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{}: {}</title></circle>"#,
                    x(i),
                    y(*v),
                    escape(name),
                    fmt_rate(*v)
                );
            }
        }
        // Legend under the plot.
        let lx = ox + 10.0 + (k % 3) as f64 * 120.0;
        let ly = bottom + 62.0 + (k / 3) as f64 * 16.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 9.0,
            lx + 14.0,
            escape(name)
        );
    }
}
