//! A small flame graph writer: stacks (root first) and counts in, one SVG out, laid out as
//! `flamegraph.pl` does (frames merged by name along the path, children alphabetical, root at
//! the bottom), each frame with a `<title>` giving its samples and share.

use std::collections::BTreeMap;
use std::fmt::Write as _;

const WIDTH: f64 = 1200.0;
const FRAME_HEIGHT: f64 = 16.0;
const PAD_TOP: f64 = 36.0;
const PAD_SIDE: f64 = 10.0;
/// Frames narrower than this many pixels are left out.
const MIN_WIDTH: f64 = 0.1;
/// Approximate width of a character of the 12 px font.
const CHAR_WIDTH: f64 = 7.0;

#[derive(Default)]
struct Node<'a> {
    value: u64,
    children: BTreeMap<&'a str, Node<'a>>,
}

/// The flame graph of `stacks` under `title`.
pub(super) fn svg<'a>(stacks: impl Iterator<Item = (Vec<&'a str>, u64)>, title: &str) -> Vec<u8> {
    let mut root = Node::default();
    for (stack, count) in stacks {
        root.value += count;
        let mut node = &mut root;
        for name in stack {
            node = node.children.entry(name).or_default();
            node.value += count;
        }
    }
    let depth = max_depth(&root);
    let height = PAD_TOP + FRAME_HEIGHT * (depth as f64 + 1.0) + 10.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="{w}" height="{height}" viewBox="0 0 {w} {height}" xmlns="http://www.w3.org/2000/svg" font-family="Verdana, sans-serif" font-size="12">
<rect x="0" y="0" width="{w}" height="{height}" fill="#f8f8f8"/>
<text x="{cx}" y="22" text-anchor="middle" font-size="16">{t}</text>
"##,
        w = WIDTH + 2.0 * PAD_SIDE,
        cx = (WIDTH + 2.0 * PAD_SIDE) / 2.0,
        t = escape(title),
    );
    let total = root.value.max(1) as f64;
    let all = format!("all ({} samples)", root.value);
    frame(&mut out, &all, root.value, total, PAD_SIDE, 0, depth);
    let mut x = PAD_SIDE;
    for (name, child) in &root.children {
        draw(&mut out, name, child, total, x, 1, depth);
        x += child.value as f64 / total * WIDTH;
    }
    out.push_str("</svg>\n");
    out.into_bytes()
}

fn max_depth(n: &Node<'_>) -> usize {
    n.children
        .values()
        .map(|c| 1 + max_depth(c))
        .max()
        .unwrap_or(0)
}

fn draw(
    out: &mut String,
    name: &str,
    n: &Node<'_>,
    total: f64,
    x: f64,
    level: usize,
    depth: usize,
) {
    if n.value as f64 / total * WIDTH < MIN_WIDTH {
        return;
    }
    frame(out, name, n.value, total, x, level, depth);
    let mut cx = x;
    for (child_name, child) in &n.children {
        draw(out, child_name, child, total, cx, level + 1, depth);
        cx += child.value as f64 / total * WIDTH;
    }
}

fn frame(out: &mut String, name: &str, value: u64, total: f64, x: f64, level: usize, depth: usize) {
    let w = value as f64 / total * WIDTH;
    let y = PAD_TOP + FRAME_HEIGHT * (depth - level) as f64;
    let (r, g, b) = color(name);
    let _ = write!(
        out,
        "<g><title>{} ({} samples, {:.2}%)</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{}\" fill=\"rgb({r},{g},{b})\" rx=\"2\"/>",
        escape(name),
        value,
        value as f64 / total * 100.0,
        FRAME_HEIGHT - 1.0,
    );
    let fits = ((w - 6.0) / CHAR_WIDTH) as usize;
    if fits >= 3 {
        let label: String = if name.chars().count() <= fits {
            name.to_owned()
        } else {
            name.chars().take(fits - 2).chain("..".chars()).collect()
        };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 3.0,
            y + FRAME_HEIGHT - 4.0,
            escape(&label)
        );
    }
    out.push_str("</g>\n");
}

/// flamegraph.pl's "hot" palette, picked by a hash of the name so a function keeps its colour.
fn color(name: &str) -> (u8, u8, u8) {
    let h = name.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    let v = |shift: u32| (h >> shift) & 0xff;
    (
        (205 + v(0) % 50) as u8,
        (v(8) % 230) as u8,
        (v(16) % 55) as u8,
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_counts_and_names_are_escaped() {
        let stacks = vec![(vec!["main", "a<T>"], 3u64), (vec!["main", "b"], 1)];
        let s = String::from_utf8(svg(stacks.into_iter(), "t")).unwrap();
        assert!(s.contains("a&lt;T&gt; (3 samples, 75.00%)"));
        assert!(s.contains("b (1 samples, 25.00%)"));
        assert!(s.contains("main (4 samples, 100.00%)"));
        assert!(s.ends_with("</svg>\n"));
    }
}
