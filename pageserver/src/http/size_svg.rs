//! The branch tree of a tenant with each timeline's share of the synthetic
//! size, drawn as SVG (`GET /v1/tenant/{tenant_id}/synthetic_size` with
//! `Accept: text/html` or `?format=svg`).
//!
//! One row per timeline, parents above children; the horizontal axis is
//! LSN. A timeline's bar spans the history it pays for (its segment's
//! start to end LSN); a grey line joins a branch to its parent at the
//! branch point. Labels give the timeline id, the segment kind and size.

use std::fmt::Write;

use pageserver_api::models::{SizeSegment, SizeSegmentKind, TenantSizeResponse};

const WIDTH: f64 = 900.0;
const LEFT: f64 = 20.0;
const ROW: f64 = 56.0;
const TOP: f64 = 60.0;
const BAR: f64 = 14.0;

/// Escapes text for XML content and attribute values.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Bytes in a short human form (`12.3 MiB`).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The SVG document.
pub fn render_svg(size: &TenantSizeResponse) -> String {
    let segs = &size.segments;
    let inputs = &size.inputs.timelines;
    // The LSN axis covers every counted range and every branch point.
    let lsns = segs
        .iter()
        .flat_map(|s| [s.start_lsn.0, s.end_lsn.0])
        .chain(inputs.iter().filter_map(|t| t.ancestor_lsn.map(|l| l.0)));
    let (min, max) = lsns.fold((u64::MAX, 0), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let (min, max) = if min > max {
        (0, 1)
    } else {
        (min, max.max(min + 1))
    };
    let plot = WIDTH - 2.0 * LEFT;
    let x = |lsn: u64| LEFT + (lsn - min) as f64 / (max - min) as f64 * plot;
    let row_of = |id| segs.iter().position(|s: &SizeSegment| s.timeline_id == id);
    let height = TOP + ROW * segs.len().max(1) as f64 + 20.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="12">"#
    );
    let _ = write!(
        out,
        r##"<title>Synthetic size of tenant {}</title><text x="{LEFT}" y="24" font-size="15">tenant {}: synthetic size {} ({} bytes)</text><text x="{LEFT}" y="42" fill="#555">LSN {} .. {}</text>"##,
        size.id,
        size.id,
        human(size.size),
        size.size,
        utils::lsn::Lsn(min),
        utils::lsn::Lsn(max),
    );
    for (i, seg) in segs.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let bar_y = y + 18.0;
        if let (Some(parent), Some(b)) = (
            seg.ancestor_timeline_id.and_then(row_of),
            inputs
                .iter()
                .find(|t| t.timeline_id == seg.timeline_id)
                .and_then(|t| t.ancestor_lsn),
        ) {
            let py = TOP + ROW * parent as f64 + 18.0 + BAR / 2.0;
            let bx = x(b.0);
            let _ = write!(
                out,
                r##"<path d="M {bx:.1} {py:.1} V {:.1} H {:.1}" stroke="#999" fill="none" stroke-dasharray="4 2"/>"##,
                bar_y + BAR / 2.0,
                x(seg.start_lsn.0),
            );
        }
        let color = match seg.kind {
            SizeSegmentKind::BranchWal => "#4a90d9",
            SizeSegmentKind::LogicalAndWal => "#d98c4a",
        };
        let (x0, x1) = (x(seg.start_lsn.0), x(seg.end_lsn.0));
        let kind = match seg.kind {
            SizeSegmentKind::BranchWal => "branch WAL",
            SizeSegmentKind::LogicalAndWal => "logical + WAL",
        };
        let label = format!(
            "{} {kind}: {} (logical {}, WAL {})",
            seg.timeline_id,
            human(seg.size),
            human(seg.logical_size),
            human(seg.wal_bytes)
        );
        let _ = write!(
            out,
            r#"<g><title>{}</title><text x="{LEFT}" y="{:.1}">{}</text><rect x="{x0:.1}" y="{bar_y:.1}" width="{:.1}" height="{BAR}" fill="{color}"/></g>"#,
            xml_escape(&format!(
                "{} from {} to {}",
                seg.timeline_id, seg.start_lsn, seg.end_lsn
            )),
            y + 12.0,
            xml_escape(&label),
            (x1 - x0).max(1.0),
        );
    }
    out.push_str("</svg>");
    out
}

/// An HTML page embedding the SVG.
pub fn render_html(size: &TenantSizeResponse) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Synthetic size of tenant {}</title></head><body>\n{}\n</body></html>\n",
        size.id,
        render_svg(size)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pageserver_api::models::{SyntheticSizeInputs, TimelineSizeInputs};
    use utils::id::{TenantId, TimelineId};
    use utils::lsn::Lsn;

    #[test]
    fn svg_names_every_timeline_and_escapes_text() {
        let (a, b) = (TimelineId::generate(), TimelineId::generate());
        let input = |id, parent: Option<TimelineId>| TimelineSizeInputs {
            timeline_id: id,
            ancestor_timeline_id: parent,
            ancestor_lsn: parent.map(|_| Lsn(0x200)),
            last_record_lsn: Lsn(0x400),
            gc_cutoff_lsn: Lsn(0x100),
            retention_cutoff_lsn: Lsn(0x100),
            logical_size_at_retention_cutoff: 10,
            logical_size_at_branch_point: None,
        };
        let inputs = SyntheticSizeInputs {
            gc_horizon: 0,
            pitr_interval_secs: 0,
            timelines: vec![input(a, None), input(b, Some(a))],
        };
        let segments = crate::tenant::size::calculate(&inputs);
        let size = TenantSizeResponse {
            id: TenantId::generate(),
            size: segments.iter().map(|s| s.size).sum(),
            segments,
            inputs,
        };
        let svg = render_svg(&size);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(&a.to_string()) && svg.contains(&b.to_string()));
        assert!(svg.contains("<path"), "branch line drawn");
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(render_html(&size).contains("<!DOCTYPE html>"));
        assert_eq!(xml_escape("a<b&\"c'"), "a&lt;b&amp;&quot;c&apos;");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(12), "12 B");
    }
}
