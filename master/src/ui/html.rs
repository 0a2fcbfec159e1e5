//! Writing HTML without a template engine: markup enters only as
//! `&'static str` (literals in this crate), and everything else only
//! through [`Html::text`], which escapes it. Forgetting to escape a value
//! is a type error, not a review finding.

use std::fmt::{self, Write as _};

/// A page or a fragment being written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Markup written into the code: no value can reach here.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// A value, escaped for text and for double-quoted attribute values.
    pub fn text(&mut self, value: impl fmt::Display) -> &mut Self {
        let _ = write!(Escaper(&mut self.0), "{value}");
        self
    }

    /// HTML written the same way (a fragment of a page).
    pub fn append(&mut self, html: &Html) -> &mut Self {
        self.0.push_str(&html.0);
        self
    }

    /// The HTML written.
    pub fn finish(self) -> String {
        self.0
    }
}

/// Escapes what is written through it into the string it holds.
struct Escaper<'a>(&'a mut String);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                // Server-sent events cannot carry a carriage return.
                '\r' => self.0.push_str("&#13;"),
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_markup_is_not() {
        let mut html = Html::new();
        html.raw("<td title=\"")
            .text("\"><script>alert('x')</script>&\r")
            .raw("\">")
            .text(42)
            .raw("</td>");
        assert_eq!(
            html.finish(),
            "<td title=\"&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&#13;\">42</td>"
        );
    }
}
