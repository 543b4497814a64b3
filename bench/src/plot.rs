//! Benchmark plots as SVG text: throughput against frame size and latency
//! CDFs, one line per series with its own colour and marker.
//!
//! Rendered with `plotters`' SVG backend only, so no font or system library is
//! needed: text sizes are estimated for the layout and the viewer (a browser,
//! GitHub) draws the text itself.

use std::ops::Range;

use anyhow::{bail, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points in the plot's units, drawn in this order.
    pub points: Vec<(f64, f64)>,
}

/// Width and height of every plot, in SVG pixels.
const SIZE_PX: (u32, u32) = (900, 540);
/// Radius of a point marker, in pixels.
const MARKER_PX: i32 = 5;
/// Most markers drawn on one series (see [`marked_points`]).
const MAX_MARKERS: usize = 16;
/// Stroke width of the lines, in pixels.
const LINE_PX: u32 = 2;
const TITLE_FONT_PX: u32 = 24;
const AXIS_DESC_FONT_PX: u32 = 18;
const LABEL_FONT_PX: u32 = 15;
/// Headroom above the highest throughput, so the top point is not on the frame.
const Y_HEADROOM: f64 = 1.1;

/// Okabe-Ito palette: distinguishable with the common colour-vision
/// deficiencies and on GitHub's light and dark themes.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(120, 94, 240),  // violet
    RGBColor(0, 0, 0),       // black
];

/// Throughput against frame size: x = frame bytes on the wire, y = Mpps.
/// SVG text.
///
/// Fails if there is no series, a series has no point, or a point is not a
/// finite number with a positive frame size and a non-negative rate.
pub fn throughput_vs_frame_size(title: &str, series: &[Series]) -> Result<String> {
    validate(series, |(x, y)| {
        if x <= 0.0 || y < 0.0 {
            bail!("frame size must be positive and Mpps non-negative, got ({x}, {y})");
        }
        Ok(())
    })?;
    let (x_lo, x_hi) = bounds(series, |p| p.0);
    let (_, y_hi) = bounds(series, |p| p.1);
    // One frame size only: widen the axis so the point sits in the middle.
    let x_pad = if x_hi > x_lo {
        (x_hi - x_lo) * 0.05
    } else {
        x_lo * 0.5
    };
    let y_top = if y_hi > 0.0 { y_hi * Y_HEADROOM } else { 1.0 };
    render(
        Axes {
            title,
            x_desc: "frame size on the wire (bytes)",
            y_desc: "throughput (Mpps)",
            x_label: &|x| format!("{x:.0}"),
            y_label: &|y| format!("{y:.2}"),
            legend: SeriesLabelPosition::UpperRight,
        },
        (x_lo - x_pad).max(0.0)..x_hi + x_pad,
        0.0..y_top,
        series,
    )
}

/// Latency CDF: x = one-way latency in microseconds (log scale), y = share of
/// frames at or below, in percent. SVG text.
///
/// Fails if there is no series, a series has no point, or a point is not a
/// finite number with a positive latency and a share in 0..=100.
pub fn latency_cdf(title: &str, series: &[Series]) -> Result<String> {
    validate(series, |(x, y)| {
        if x <= 0.0 {
            bail!("latency must be positive on a log axis, got {x} us");
        }
        if !(0.0..=100.0).contains(&y) {
            bail!("share must be within 0..=100 percent, got {y}");
        }
        Ok(())
    })?;
    let (x_lo, x_hi) = bounds(series, |p| p.0);
    // Pad by a factor, which is a constant distance on a log axis; one value
    // only still gets a non-empty range.
    let x_range = (x_lo / 1.25)..(x_hi * 1.25);
    render(
        Axes {
            title,
            x_desc: "one-way latency (us, log scale)",
            y_desc: "frames at or below (%)",
            x_label: &format_us,
            y_label: &|y| format!("{y:.0}"),
            legend: SeriesLabelPosition::LowerRight,
        },
        x_range.log_scale(),
        0.0..100.0,
        series,
    )
}

/// Titles, tick formatting and legend position of one plot.
struct Axes<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    x_label: &'a dyn Fn(&f64) -> String,
    y_label: &'a dyn Fn(&f64) -> String,
    legend: SeriesLabelPosition,
}

/// Checks that there is something to draw and that every point fits `check`.
fn validate(series: &[Series], check: impl Fn((f64, f64)) -> Result<()>) -> Result<()> {
    if series.is_empty() {
        bail!("nothing to plot: no series");
    }
    for s in series {
        if s.points.is_empty() {
            bail!("nothing to plot for series {:?}: it has no points", s.name);
        }
        for &(x, y) in &s.points {
            if !x.is_finite() || !y.is_finite() {
                bail!("series {:?} has a non-finite point ({x}, {y})", s.name);
            }
            check((x, y)).with_context(|| format!("series {:?}", s.name))?;
        }
    }
    Ok(())
}

/// Smallest and largest coordinate over all points (all series non-empty).
fn bounds(series: &[Series], coord: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    series
        .iter()
        .flat_map(|s| s.points.iter().map(&coord))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// The points that get a marker: all of them for a short series; for a long
/// one (a CDF from a histogram) about [`MAX_MARKERS`] evenly spaced ones and
/// the last, so the markers tell the series apart without hiding the line.
fn marked_points(points: &[(f64, f64)]) -> impl Iterator<Item = (f64, f64)> + '_ {
    let step = points.len().div_ceil(MAX_MARKERS).max(1);
    let last = points.len().saturating_sub(1);
    points
        .iter()
        .enumerate()
        .filter(move |&(i, _)| i % step == 0 || i == last)
        .map(|(_, &p)| p)
}

/// A latency tick: whole microseconds from 10 us on, one decimal below.
fn format_us(us: &f64) -> String {
    if *us >= 10.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

/// Draws `series` on a chart with the given axes and returns the SVG text.
fn render<X>(axes: Axes, x_range: X, y_range: Range<f64>, series: &[Series]) -> Result<String>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE_PX).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(axes.title, ("sans-serif", TITLE_FONT_PX))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(72)
            .build_cartesian_2d(x_range, y_range)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(axes.x_desc)
            .y_desc(axes.y_desc)
            .axis_desc_style(("sans-serif", AXIS_DESC_FONT_PX))
            .label_style(("sans-serif", LABEL_FONT_PX))
            .x_label_formatter(axes.x_label)
            .y_label_formatter(axes.y_label)
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(plot_error)?;
        for (i, s) in series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let marker = Marker::ALL[i % Marker::ALL.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    colour.stroke_width(LINE_PX),
                ))
                .map_err(plot_error)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new([(-12, 0), (12, 0)], colour.stroke_width(LINE_PX))
                        + marker.shape(colour)
                });
            chart
                .draw_series(
                    marked_points(&s.points).map(|p| EmptyElement::at(p) + marker.shape(colour)),
                )
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .position(axes.legend)
            .label_font(("sans-serif", LABEL_FONT_PX))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// `plotters` errors borrow the backend's error type; keep only the message.
fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

/// Point marker shapes, all drawn as filled polygons around the point so
/// that every series gets the same element type.
#[derive(Debug, Clone, Copy)]
enum Marker {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
    Pentagon,
}

impl Marker {
    /// The order in which series get their markers.
    const ALL: [Marker; 6] = [
        Marker::Circle,
        Marker::Square,
        Marker::TriangleUp,
        Marker::Diamond,
        Marker::TriangleDown,
        Marker::Pentagon,
    ];

    /// Corners in pixels relative to the point, y growing downwards.
    fn vertices(self) -> Vec<(i32, i32)> {
        let r = f64::from(MARKER_PX);
        // (corners, rotation of the first corner from straight up, scale):
        // squares and diamonds are scaled so their area is near the circle's.
        let (corners, rotation, scale) = match self {
            Marker::Circle => (16, 0.0, 1.0),
            Marker::Square => (4, std::f64::consts::FRAC_PI_4, 1.2),
            Marker::TriangleUp => (3, 0.0, 1.35),
            Marker::Diamond => (4, 0.0, 1.3),
            Marker::TriangleDown => (3, std::f64::consts::PI, 1.35),
            Marker::Pentagon => (5, 0.0, 1.15),
        };
        (0..corners)
            .map(|k| {
                let a = rotation + std::f64::consts::TAU * f64::from(k) / f64::from(corners);
                (
                    (r * scale * a.sin()).round() as i32,
                    (-r * scale * a.cos()).round() as i32,
                )
            })
            .collect()
    }

    fn shape(self, colour: RGBColor) -> Polygon<(i32, i32)> {
        Polygon::new(self.vertices(), colour.filled())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
        }
    }

    /// Every tag opened is closed, in order (enough to catch a truncated or
    /// mangled document without an XML parser).
    fn assert_well_formed(svg: &str) {
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unclosed tag") + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
                continue;
            }
            let name = |t: &'_ str| t.split_whitespace().next().unwrap_or("").to_string();
            if let Some(closing) = tag.strip_prefix('/') {
                let opened = open.pop().expect("closing tag without an opening one");
                assert_eq!(name(opened), name(closing));
            } else {
                open.push(tag);
            }
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
    }

    #[test]
    fn throughput_plot_has_every_series_axis_and_title() {
        let svg = throughput_vs_frame_size(
            "bridge throughput",
            &[
                series("tapline", &[(64.0, 0.7), (128.0, 0.68), (1518.0, 0.4)]),
                series("linux-bridge", &[(64.0, 0.55), (128.0, 0.5), (1518.0, 0.3)]),
            ],
        )
        .unwrap();
        assert_well_formed(&svg);
        for text in [
            "bridge throughput",
            "tapline",
            "linux-bridge",
            "frame size on the wire (bytes)",
            "throughput (Mpps)",
        ] {
            assert!(svg.contains(text), "missing {text:?}");
        }
        // Two series: two distinct colours.
        assert!(svg.contains("#0072B2"));
        assert!(svg.contains("#D55E00"));
    }

    #[test]
    fn latency_cdf_uses_a_log_axis_and_escapes_names() {
        let svg = latency_cdf(
            "latency <1 Mpps> & more",
            &[series(
                "tapline",
                &[(3.0, 0.0), (8.0, 50.0), (40.0, 99.0), (900.0, 100.0)],
            )],
        )
        .unwrap();
        assert_well_formed(&svg);
        assert!(svg.contains("latency &lt;1 Mpps&gt; &amp; more"));
        assert!(svg.contains("one-way latency (us, log scale)"));
        assert!(svg.contains("frames at or below (%)"));
    }

    #[test]
    fn a_single_point_still_plots() {
        let svg = throughput_vs_frame_size("one size", &[series("tapline", &[(64.0, 0.7)])]);
        assert_well_formed(&svg.unwrap());
        let svg = latency_cdf("one latency", &[series("tapline", &[(5.0, 100.0)])]);
        assert_well_formed(&svg.unwrap());
    }

    #[test]
    fn nothing_to_plot_is_an_error() {
        let err = throughput_vs_frame_size("t", &[]).unwrap_err();
        assert!(err.to_string().contains("no series"), "{err}");
        let err = latency_cdf("t", &[series("empty-dut", &[])]).unwrap_err();
        assert!(format!("{err:#}").contains("empty-dut"), "{err:#}");
    }

    #[test]
    fn points_outside_the_axes_are_errors() {
        let err = latency_cdf("t", &[series("a", &[(0.0, 50.0)])]).unwrap_err();
        assert!(format!("{err:#}").contains("log axis"), "{err:#}");
        let err = latency_cdf("t", &[series("a", &[(1.0, 101.0)])]).unwrap_err();
        assert!(format!("{err:#}").contains("0..=100"), "{err:#}");
        let err = throughput_vs_frame_size("t", &[series("a", &[(64.0, f64::NAN)])]).unwrap_err();
        assert!(format!("{err:#}").contains("non-finite"), "{err:#}");
    }

    #[test]
    fn long_series_get_a_bounded_number_of_markers() {
        let short: Vec<(f64, f64)> = (0..5).map(|i| (f64::from(i), 0.0)).collect();
        assert_eq!(marked_points(&short).count(), 5);
        let long: Vec<(f64, f64)> = (0..1000).map(|i| (f64::from(i), 0.0)).collect();
        let marked: Vec<(f64, f64)> = marked_points(&long).collect();
        assert!(marked.len() <= MAX_MARKERS + 1, "{}", marked.len());
        assert_eq!(marked.first(), Some(&(0.0, 0.0)));
        assert_eq!(marked.last(), Some(&(999.0, 0.0)));
    }

    #[test]
    fn markers_differ_between_series() {
        let shapes: Vec<Vec<(i32, i32)>> = Marker::ALL.iter().map(|m| m.vertices()).collect();
        for (i, a) in shapes.iter().enumerate() {
            for b in &shapes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
