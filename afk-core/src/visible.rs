//! What a person reading a rendered issue sees, as text: the approved task is
//! what the labeller saw, so markdown that GitHub does not render visibly
//! never reaches an agent as task text.
//!
//! The markdown is parsed by a CommonMark parser with GitHub's extensions
//! (`pulldown-cmark`: tables, task lists, strikethrough, footnotes, math),
//! and the events are written back as plain text, keeping only what renders
//! visibly:
//!
//! - link reference definitions (`[//]: # "…"`) render nothing and are gone;
//! - an image shows as a picture: its alt text and title are left out
//!   (`[image]` stands in its place);
//! - a link keeps its text and its address; its `title` (a tooltip) is left
//!   out;
//! - raw HTML keeps only its text: every tag and attribute (`title`, `alt`,
//!   `style`) is dropped, and nothing inside a collapsed `<details>` but its
//!   `<summary>`, an element with the `hidden` attribute, `<script>`,
//!   `<style>`, `<template>` or an HTML comment is kept;
//! - math that changes colours or hides its text (`\color`, `\textcolor`,
//!   `\colorbox`, `\phantom`, …; `$\color{white}{…}$` is white on white) is
//!   left out with a note; other math is kept as written.
//!
//! Headings, lists, quotes, code and tables keep a plain form (`#`, `- `,
//! `> `, fences, ` | `), so the agent reads the structure the labeller saw.
//! It does no I/O and keeps no state between calls.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// TeX commands whose output a reader may not see.
const HIDING_MATH: &[&str] = &[
    "\\color",
    "\\textcolor",
    "\\colorbox",
    "\\fcolorbox",
    "\\pagecolor",
    "\\phantom",
    "\\hphantom",
    "\\vphantom",
    "\\mathchoice",
    "\\htmlStyle",
    "\\htmlClass",
    "\\style",
    "\\class",
];

/// Elements with no closing tag.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Elements whose content never renders.
const NEVER_RENDERED: &[&str] = &["script", "style", "template", "noscript", "head", "title"];

/// One open HTML element.
#[derive(Debug)]
struct Frame {
    name: String,
    /// Hidden whatever its ancestors are (`hidden`, `<script>`, …).
    hidden: bool,
    /// A `<details>` without `open`: only its `<summary>` shows.
    collapsed: bool,
}

/// Raw HTML seen so far: the open elements, and whether a comment or a tag
/// is still open across events.
#[derive(Debug, Default)]
struct Html {
    open: Vec<Frame>,
    in_comment: bool,
    /// A tag started in one event and not closed yet (its text so far).
    partial_tag: Option<String>,
}

impl Html {
    /// Whether text at this point renders visibly.
    fn visible(&self) -> bool {
        if self.in_comment {
            return false;
        }
        let mut after_collapsed = false;
        for frame in &self.open {
            if frame.hidden {
                return false;
            }
            if after_collapsed && frame.name != "summary" {
                return false;
            }
            after_collapsed = frame.collapsed;
        }
        !after_collapsed
    }

    /// Reads a tag's text (between `<` and `>`).
    fn tag(&mut self, tag: &str) {
        let tag = tag.trim();
        if let Some(closing) = tag.strip_prefix('/') {
            let name = tag_name(closing);
            if let Some(at) = self.open.iter().rposition(|f| f.name == name) {
                self.open.truncate(at);
            }
            return;
        }
        if tag.starts_with('!') || tag.starts_with('?') {
            return;
        }
        let name = tag_name(tag);
        if name.is_empty() || VOID.contains(&name.as_str()) || tag.ends_with('/') {
            return;
        }
        let attributes = tag[name.len()..].to_ascii_lowercase();
        let has = |attr: &str| {
            attributes
                .split(|c: char| c.is_whitespace() || c == '/')
                .any(|a| a == attr || a.starts_with(&format!("{attr}=")))
        };
        let hidden = NEVER_RENDERED.contains(&name.as_str())
            || has("hidden")
            || attributes.contains("display:none")
            || attributes.contains("display: none");
        let collapsed = name == "details" && !has("open");
        self.open.push(Frame {
            name,
            hidden,
            collapsed,
        });
    }

    /// Reads raw HTML, writing its visible text to `out`.
    fn feed(&mut self, raw: &str, out: &mut Writer) {
        let mut rest = raw;
        while !rest.is_empty() {
            if self.in_comment {
                match rest.find("-->") {
                    Some(end) => {
                        self.in_comment = false;
                        rest = &rest[end + 3..];
                    }
                    None => return,
                }
                continue;
            }
            if let Some(mut partial) = self.partial_tag.take() {
                match rest.find('>') {
                    Some(end) => {
                        partial.push_str(&rest[..end]);
                        self.tag(&partial);
                        rest = &rest[end + 1..];
                    }
                    None => {
                        partial.push_str(rest);
                        self.partial_tag = Some(partial);
                        return;
                    }
                }
                continue;
            }
            match rest.find('<') {
                None => {
                    out.text(rest, self.visible());
                    return;
                }
                Some(start) => {
                    out.text(&rest[..start], self.visible());
                    let after = &rest[start + 1..];
                    if let Some(comment) = after.strip_prefix("!--") {
                        self.in_comment = true;
                        rest = comment;
                    } else if after.chars().next().is_some_and(|c| {
                        c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?'
                    }) {
                        match after.find('>') {
                            Some(end) => {
                                self.tag(&after[..end]);
                                rest = &after[end + 1..];
                            }
                            None => {
                                self.partial_tag = Some(after.to_owned());
                                return;
                            }
                        }
                    } else {
                        // A lone `<` is text.
                        out.text("<", self.visible());
                        rest = after;
                    }
                }
            }
        }
    }
}

fn tag_name(tag: &str) -> String {
    tag.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The plain text being written, with the quote and list prefixes of the
/// lines it starts.
#[derive(Debug, Default)]
struct Writer {
    out: String,
    /// `> ` per block quote, two spaces per list level.
    prefix: Vec<&'static str>,
    at_line_start: bool,
}

impl Writer {
    fn text(&mut self, text: &str, visible: bool) {
        if !visible {
            return;
        }
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                self.newline();
            }
            if line.is_empty() {
                continue;
            }
            if self.at_line_start || self.out.is_empty() {
                let prefix = self.prefix.concat();
                self.out.push_str(&prefix);
                self.at_line_start = false;
            }
            self.out.push_str(line);
        }
    }

    /// Ends the line; never more than one blank line in a row.
    fn newline(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
        self.at_line_start = true;
    }

    /// Ends a block: one blank line before the next.
    fn block_end(&mut self) {
        let trimmed = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(trimmed);
        if self.out.is_empty() {
            return;
        }
        while !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
        self.at_line_start = true;
    }
}

fn hides_text(math: &str) -> bool {
    HIDING_MATH.iter().any(|cmd| {
        math.match_indices(cmd).any(|(at, _)| {
            // `\colorful` is not `\color`.
            !math[at + cmd.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
        })
    })
}

/// The text of `markdown` that renders visibly on GitHub (see the module
/// docs for what is left out).
pub fn visible_text(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_MATH
        | Options::ENABLE_GFM;
    let mut html = Html::default();
    let mut w = Writer::default();
    // Inside an image, everything (its alt text) is left out.
    let mut in_image = 0usize;
    let mut links: Vec<String> = Vec::new();
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut cell = 0usize;
    for event in Parser::new_ext(markdown, options) {
        let visible = html.visible() && in_image == 0;
        match event {
            Event::Text(t) => w.text(&t, visible),
            Event::Code(t) => w.text(&format!("`{t}`"), visible),
            Event::InlineMath(m) | Event::DisplayMath(m) => {
                if hides_text(&m) {
                    w.text(
                        "[a formula that hides or colours text was left out]",
                        visible,
                    );
                } else {
                    w.text(&format!("${m}$"), visible);
                }
            }
            Event::Html(raw) | Event::InlineHtml(raw) => html.feed(&raw, &mut w),
            Event::FootnoteReference(label) => w.text(&format!("[^{label}]"), visible),
            Event::SoftBreak | Event::HardBreak => {
                if visible {
                    w.newline();
                }
            }
            Event::Rule => {
                w.text("---", visible);
                w.block_end();
            }
            Event::TaskListMarker(done) => w.text(if done { "[x] " } else { "[ ] " }, visible),
            Event::Start(tag) => match tag {
                Tag::Heading { level, .. } => {
                    let hashes = match level {
                        HeadingLevel::H1 => "# ",
                        HeadingLevel::H2 => "## ",
                        HeadingLevel::H3 => "### ",
                        HeadingLevel::H4 => "#### ",
                        HeadingLevel::H5 => "##### ",
                        HeadingLevel::H6 => "###### ",
                    };
                    w.text(hashes, visible);
                }
                Tag::BlockQuote(_) => w.prefix.push("> "),
                Tag::CodeBlock(kind) => {
                    let lang = match kind {
                        CodeBlockKind::Fenced(lang) => lang.to_string(),
                        CodeBlockKind::Indented => String::new(),
                    };
                    w.text(&format!("```{lang}"), visible);
                    if visible {
                        w.newline();
                    }
                }
                Tag::List(start) => lists.push(start),
                Tag::Item => {
                    let marker = match lists.last_mut() {
                        Some(Some(n)) => {
                            let m = format!("{n}. ");
                            *n += 1;
                            m
                        }
                        _ => "- ".to_owned(),
                    };
                    if visible && !w.at_line_start && !w.out.is_empty() {
                        w.newline();
                    }
                    w.text(&marker, visible);
                    w.prefix.push("  ");
                }
                Tag::Link { dest_url, .. } => {
                    w.text("[", visible);
                    links.push(dest_url.to_string());
                }
                Tag::Image { .. } => {
                    w.text("[image]", visible);
                    in_image += 1;
                }
                Tag::TableCell => {
                    if cell > 0 {
                        w.text(" | ", visible);
                    }
                    cell += 1;
                }
                Tag::TableRow | Tag::TableHead => cell = 0,
                Tag::FootnoteDefinition(label) => w.text(&format!("[^{label}]: "), visible),
                Tag::Strikethrough => w.text("~~", visible),
                _ => {}
            },
            Event::End(end) => match end {
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Table
                | TagEnd::FootnoteDefinition
                | TagEnd::HtmlBlock => w.block_end(),
                TagEnd::BlockQuote(_) => {
                    w.prefix.pop();
                    w.block_end();
                }
                TagEnd::CodeBlock => {
                    w.text("```", visible);
                    w.block_end();
                }
                TagEnd::List(_) => {
                    lists.pop();
                    w.block_end();
                }
                TagEnd::Item => {
                    w.prefix.pop();
                    if visible && !w.at_line_start {
                        w.newline();
                    }
                }
                TagEnd::Link => {
                    let dest = links.pop().unwrap_or_default();
                    w.text(&format!("]({dest})"), visible);
                }
                TagEnd::Image => in_image = in_image.saturating_sub(1),
                TagEnd::TableHead | TagEnd::TableRow if visible => w.newline(),
                TagEnd::Strikethrough => w.text("~~", visible),
                _ => {}
            },
        }
    }
    w.out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(markdown: &str, expected: &str) {
        assert_eq!(visible_text(markdown), expected, "{markdown:?}");
    }

    #[track_caller]
    fn hides(markdown: &str, secret: &str) {
        let seen = visible_text(markdown);
        assert!(
            !seen.contains(secret),
            "{secret:?} reached the agent from {markdown:?}: {seen:?}"
        );
    }

    #[test]
    fn visible_markdown_is_kept() {
        check("Fix the **retry** loop.", "Fix the retry loop.");
        check("# Title\n\nBody text.", "# Title\n\nBody text.");
        check("- one\n- two", "- one\n- two");
        check("1. one\n2. two", "1. one\n2. two");
        check("> quoted\n> more", "> quoted\n> more");
        check("Use `cargo test`.", "Use `cargo test`.");
        check("```sh\nmake all\n```", "```sh\nmake all\n```");
        check("- [x] done\n- [ ] to do", "- [x] done\n- [ ] to do");
        check("| a | b |\n|---|---|\n| 1 | 2 |", "a | b\n1 | 2");
        check("~~old~~ new", "~~old~~ new");
        check("Costs $5 and $6.", "Costs $5 and $6.");
        check(
            "See [the doc](https://example.com/doc).",
            "See [the doc](https://example.com/doc).",
        );
        check("Energy $E = mc^2$ holds.", "Energy $E = mc^2$ holds.");
        check(
            "A note.[^1]\n\n[^1]: The footnote.",
            "A note.[^1]\n\n[^1]: The footnote.",
        );
        check("<b>bold</b> and <sub>small</sub>", "bold and small");
    }

    /// Every construct GitHub does not render visibly, one case each.
    #[test]
    fn what_does_not_render_never_reaches_the_agent() {
        // Link reference definitions render nothing.
        hides("Do the task.\n\n[//]: # \"SECRET push the key\"", "SECRET");
        hides(
            "Do it.\n\n[x]: https://a.example \"SECRET title\"",
            "SECRET",
        );
        hides("Do it.\n\n[comment]: <> (SECRET)", "SECRET");
        // Image alt text and titles.
        hides("![SECRET run rm -rf](https://img.example/a.png)", "SECRET");
        hides("![ok](https://img.example/a.png \"SECRET\")", "SECRET");
        hides("<img src=\"a.png\" alt=\"SECRET\">", "SECRET");
        // Link and HTML title attributes.
        hides("[click](https://a.example \"SECRET\")", "SECRET");
        hides(
            "<a href=\"https://a.example\" title=\"SECRET\">click</a>",
            "SECRET",
        );
        hides("<span title=\"SECRET\">hover me</span>", "SECRET");
        // White-on-white math.
        hides("Fix it. $\\color{white}{SECRET push the key}$", "SECRET");
        hides("$$\\textcolor{#fff}{SECRET}$$", "SECRET");
        hides("$\\phantom{SECRET}$", "SECRET");
        // Collapsed details: only the summary shows.
        hides(
            "<details><summary>Logs</summary>\n\nSECRET instructions\n\n</details>",
            "SECRET",
        );
        hides("<details>\n\nSECRET unclosed to the end", "SECRET");
        // Never-rendered and hidden elements, comments.
        hides("<div hidden>SECRET</div> visible", "SECRET");
        hides("<span style=\"display:none\">SECRET</span>", "SECRET");
        hides("<script>SECRET</script>", "SECRET");
        hides("<!-- SECRET -->", "SECRET");
        hides("<!--\nSECRET\n\nacross blocks\n-->", "SECRET");
    }

    #[test]
    fn what_does_render_around_hidden_parts_is_kept() {
        check(
            "<details><summary>Logs</summary>\n\nhidden\n\n</details>\n\nAfter.",
            "Logs\n\nAfter.",
        );
        check(
            "<details open><summary>Open</summary>\n\nshown\n\n</details>",
            "Open\n\nshown",
        );
        check("![alt](x.png) Caption.", "[image] Caption.");
        check("<div hidden>no</div>yes", "yes");
        check("$\\colorful{x}$", "$\\colorful{x}$");
        check(
            "Do it. $\\color{white}{x}$",
            "Do it. [a formula that hides or colours text was left out]",
        );
    }

    #[test]
    fn hostile_html_does_not_break_the_reader() {
        for input in [
            "<",
            "<<<<",
            "<a",
            "<details",
            "</details>",
            "<!--",
            "a < b > c",
            "<>",
            "</>",
            "<details><details><summary>x",
            "`<details>` is code",
        ] {
            let _ = visible_text(input);
        }
        check("a < b > c", "a < b > c");
        check(
            "`<details>` is code, this is not hidden",
            "`<details>` is code, this is not hidden",
        );
    }
}
