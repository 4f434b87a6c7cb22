//! Small, dependency-free SVG charts for `culprit eval --out`: AC@k per method and suite, and
//! the reliability diagram of culprit's confidence.

use crate::eval::SuiteReport;
use std::fmt::Write as _;

const W: f64 = 640.0;
const H: f64 = 360.0;
const PAD: f64 = 50.0;
/// Room on the right for the legend.
const LEGEND: f64 = 130.0;
const COLOURS: [&str; 7] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn frame(title: &str, body: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n{body}</svg>\n",
        W / 2.0,
        escape(title)
    )
}

/// Grouped bars: for one suite, AC@1, AC@3 and AC@5 of every method.
pub fn accuracy(report: &SuiteReport) -> String {
    let mut b = String::new();
    let methods: Vec<_> = report.methods.iter().collect();
    let plot_w = W - 2.0 * PAD - LEGEND;
    let plot_h = H - 2.0 * PAD;
    let group = plot_w / 3.0;
    let bar = group / (methods.len() as f64 + 1.0);
    for (k, label) in ["AC@1", "AC@3", "AC@5"].iter().enumerate() {
        let x0 = PAD + k as f64 * group;
        let _ = writeln!(
            b,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            x0 + group / 2.0,
            H - PAD + 16.0
        );
        for (i, (m, s)) in methods.iter().enumerate() {
            let v = [s.ac1, s.ac3, s.ac5][k].clamp(0.0, 1.0);
            let h = v * plot_h;
            let _ = writeln!(
                b,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {label} {v:.3}</title></rect>",
                x0 + (i as f64 + 0.5) * bar,
                H - PAD - h,
                bar * 0.9,
                h,
                COLOURS[i % COLOURS.len()],
                m.as_str()
            );
        }
    }
    axes(&mut b);
    for (i, (m, _)) in methods.iter().enumerate() {
        let y = 40.0 + i as f64 * 14.0;
        let _ = writeln!(
            b,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            W - LEGEND,
            y - 9.0,
            COLOURS[i % COLOURS.len()],
            W - LEGEND + 15.0,
            y,
            m.as_str()
        );
    }
    frame(&format!("{} — accuracy ({} cases)", report.name, report.cases), &b)
}

fn axes(b: &mut String) {
    let _ = writeln!(
        b,
        "<line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        H - PAD,
        W - PAD - LEGEND,
        H - PAD
    );
    let _ = writeln!(b, "<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"black\"/>", H - PAD);
    for t in 0..=4 {
        let v = t as f64 / 4.0;
        let y = H - PAD - v * (H - 2.0 * PAD);
        let _ = writeln!(b, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>", PAD - 4.0, y + 4.0);
    }
}

/// Reliability diagram: per confidence bin, the share of top-1 answers that were right, against
/// the diagonal of perfect calibration; bin counts as labels.
pub fn reliability(title: &str, bins: &[(f64, f64, usize)]) -> String {
    let mut b = String::new();
    let plot = W.min(H) - 2.0 * PAD;
    let (x0, y0) = (PAD, H - PAD);
    let _ = writeln!(
        b,
        "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4\"/>",
        x0 + plot,
        y0 - plot
    );
    let n = bins.len().max(1) as f64;
    for (i, (conf, acc, count)) in bins.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let w = plot / n;
        let h = acc * plot;
        let x = x0 + i as f64 * w;
        let _ = writeln!(
            b,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#1f77b4\" fill-opacity=\"0.7\"><title>confidence {conf:.2}: {acc:.2} right of {count}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{count}</text>",
            y0 - h,
            w * 0.95,
            x + w / 2.0,
            y0 - h - 3.0
        );
    }
    let _ = writeln!(b, "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"black\"/>", x0 + plot);
    let _ = writeln!(b, "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{}\" stroke=\"black\"/>", y0 - plot);
    for t in 0..=4 {
        let v = t as f64 / 4.0;
        let _ =
            writeln!(b, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{v:.2}</text>", x0 + v * plot, y0 + 14.0);
        let _ =
            writeln!(b, "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>", x0 - 4.0, y0 - v * plot + 4.0);
    }
    let _ = writeln!(b, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">confidence</text>", x0 + plot / 2.0, y0 + 30.0);
    let _ = writeln!(
        b,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 {} {})\">share right</text>",
        x0 - 36.0,
        y0 - plot / 2.0,
        x0 - 36.0,
        y0 - plot / 2.0
    );
    frame(title, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliability_svg_has_a_bar_per_filled_bin_and_escapes_titles() {
        let svg = reliability("a < b", &[(0.1, 0.0, 3), (0.0, 0.0, 0), (0.9, 1.0, 5)]);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<rect x=").count(), 2);
        assert!(svg.contains("a &lt; b"));
    }
}
