//! A tolerant parser for the Prometheus text exposition format (0.0.4) and
//! the selectors that pick figures out of it.
//!
//! Pure: text in, values out. A line that does not parse is skipped and
//! counted, never a panic and never a failed scrape: a backend that exports
//! one odd line still reports the figures e2lb asked for.
//!
//! Accepted per line (after trimming):
//! - empty lines and `#` comments, including `# HELP` and `# TYPE`;
//! - `name value [timestamp]` and `name{label="value",...} value [timestamp]`,
//!   with `\\`, `\"` and `\n` escapes in label values, an optional trailing
//!   comma in the label set, and `NaN`, `+Inf`, `-Inf` as values.

use std::borrow::Cow;

/// One sample line of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpoSample<'a> {
    pub name: &'a str,
    /// Label pairs in the order written; values unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
    /// Milliseconds since the epoch, if the line carried one.
    pub timestamp_ms: Option<i64>,
}

/// Why one line was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("missing or invalid metric name")]
    Name,
    #[error("malformed label set")]
    Labels,
    #[error("missing or invalid value")]
    Value,
    #[error("invalid timestamp")]
    Timestamp,
    #[error("unexpected text after the timestamp")]
    Trailing,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Splits a leading identifier (`[a-zA-Z_:][a-zA-Z0-9_:]*`) off `s`.
fn take_name(s: &str) -> Option<(&str, &str)> {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if is_name_start(c) => {}
        _ => return None,
    }
    let end = chars
        .find(|&(_, c)| !is_name_char(c))
        .map_or(s.len(), |(i, _)| i);
    Some((&s[..end], &s[end..]))
}

/// Parses `{a="x",b="y"}` at the start of `s` (which must begin with `{`);
/// returns the pairs and the rest after `}`.
#[allow(clippy::type_complexity)]
fn take_labels(s: &str) -> Result<(Vec<(&str, Cow<'_, str>)>, &str), LineError> {
    let mut rest = s.strip_prefix('{').ok_or(LineError::Labels)?;
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = take_name(rest).ok_or(LineError::Labels)?;
        let after = after
            .trim_start()
            .strip_prefix('=')
            .ok_or(LineError::Labels)?;
        let after = after
            .trim_start()
            .strip_prefix('"')
            .ok_or(LineError::Labels)?;
        let (value, after) = take_quoted(after)?;
        labels.push((name, value));
        rest = after.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(LineError::Labels);
        }
    }
}

/// Reads a label value up to its closing quote (the opening one is already
/// consumed), unescaping `\\`, `\"` and `\n`. Unknown escapes are kept as written.
fn take_quoted(s: &str) -> Result<(Cow<'_, str>, &str), LineError> {
    let mut owned: Option<String> = None;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = match owned {
                    Some(o) => Cow::Owned(o),
                    None => Cow::Borrowed(&s[..i]),
                };
                return Ok((value, &s[i + 1..]));
            }
            '\\' => {
                let buf = owned.get_or_insert_with(|| s[..i].to_owned());
                match chars.next() {
                    Some((_, 'n')) => buf.push('\n'),
                    Some((_, '\\')) => buf.push('\\'),
                    Some((_, '"')) => buf.push('"'),
                    Some((_, other)) => {
                        buf.push('\\');
                        buf.push(other);
                    }
                    None => return Err(LineError::Labels),
                }
            }
            c => {
                if let Some(buf) = owned.as_mut() {
                    buf.push(c);
                }
            }
        }
    }
    Err(LineError::Labels)
}

/// Parses a sample value: a float, `NaN`, `+Inf` or `-Inf` (any case).
pub fn parse_value(s: &str) -> Option<f64> {
    // Rust accepts "inf", "infinity" and "nan" in any case, with a sign.
    s.parse::<f64>().ok()
}

/// Parses one line. `Ok(None)` for blank lines and comments.
pub fn parse_line(line: &str) -> Result<Option<ExpoSample<'_>>, LineError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (name, rest) = take_name(line).ok_or(LineError::Name)?;
    let (labels, rest) = if rest.trim_start().starts_with('{') {
        take_labels(rest.trim_start())?
    } else if rest.is_empty() || rest.starts_with([' ', '\t']) {
        (Vec::new(), rest)
    } else {
        // e.g. `foo-bar 1`: the name stopped at '-'.
        return Err(LineError::Name);
    };
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .and_then(parse_value)
        .ok_or(LineError::Value)?;
    let timestamp_ms = match fields.next() {
        Some(t) => Some(t.parse::<i64>().map_err(|_| LineError::Timestamp)?),
        None => None,
    };
    if fields.next().is_some() {
        return Err(LineError::Trailing);
    }
    Ok(Some(ExpoSample {
        name,
        labels,
        value,
        timestamp_ms,
    }))
}

/// Every sample line of `text`, with the lines that failed to parse as `Err`
/// (1-based line number and the reason).
pub fn samples(
    text: &str,
) -> impl Iterator<Item = Result<ExpoSample<'_>, (usize, LineError)>> + '_ {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| parse_line(line).map_err(|e| (i + 1, e)).transpose())
}

/// A metric name with optional label matchers:
/// `name` or `name{label="value",...}`. A sample matches when its name is
/// equal and it carries every matcher label with exactly that value (other
/// labels are ignored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

/// A selector string that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid metric selector: {0}")]
pub struct InvalidSelector(pub LineError);

impl Selector {
    /// Parses `name` or `name{label="value",...}` (label values escaped as in
    /// the exposition format).
    pub fn parse(s: &str) -> Result<Selector, InvalidSelector> {
        let s = s.trim();
        let (name, rest) = take_name(s).ok_or(InvalidSelector(LineError::Name))?;
        let labels = if rest.is_empty() {
            Vec::new()
        } else {
            let (labels, after) = take_labels(rest).map_err(InvalidSelector)?;
            if !after.trim().is_empty() {
                return Err(InvalidSelector(LineError::Trailing));
            }
            labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into_owned()))
                .collect()
        };
        Ok(Selector {
            name: name.to_owned(),
            labels,
        })
    }

    pub fn matches(&self, s: &ExpoSample<'_>) -> bool {
        s.name == self.name
            && self
                .labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            write!(f, "{k}=\"{v}\"")?;
        }
        f.write_str("}")
    }
}

/// What [`extract`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    /// One slot per selector, in order: the first matching sample's value.
    pub values: Vec<Option<f64>>,
    /// Lines skipped because they did not parse.
    pub bad_lines: usize,
}

/// Scans `text` once and returns, for each selector, the value of the first
/// sample it matches.
pub fn extract(text: &str, selectors: &[&Selector]) -> Extracted {
    let mut out = Extracted {
        values: vec![None; selectors.len()],
        bad_lines: 0,
    };
    for s in samples(text) {
        let Ok(s) = s else {
            out.bad_lines += 1;
            continue;
        };
        for (slot, sel) in out.values.iter_mut().zip(selectors) {
            if slot.is_none() && sel.matches(&s) {
                *slot = Some(s.value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RIC: &str = r#"# HELP ric_associations E2 associations currently open
# TYPE ric_associations gauge
ric_associations 3
# HELP ric_cpu_utilisation_ratio CPU time over wall time
# TYPE ric_cpu_utilisation_ratio gauge
ric_cpu_utilisation_ratio 0.25
# HELP ric_processing_latency_seconds quantiles
# TYPE ric_processing_latency_seconds gauge
ric_processing_latency_seconds{quantile="0.5"} 0.001
ric_processing_latency_seconds{quantile="0.99"} 0.002
ric_processing_latency_seconds_mean 0.0012
"#;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).expect("selector")
    }

    #[test]
    fn extracts_names_and_label_matchers() {
        let (cpu, p99, mean, missing) = (
            sel("ric_cpu_utilisation_ratio"),
            sel(r#"ric_processing_latency_seconds{quantile="0.99"}"#),
            sel("ric_processing_latency_seconds_mean"),
            sel("ric_nothing"),
        );
        let e = extract(RIC, &[&cpu, &p99, &mean, &missing]);
        assert_eq!(e.values, vec![Some(0.25), Some(0.002), Some(0.0012), None]);
        assert_eq!(e.bad_lines, 0);
    }

    #[test]
    fn escapes_special_values_and_timestamps() {
        let text = "a{path=\"C:\\\\x\",msg=\"say \\\"hi\\\"\\n\",} NaN 1700000000000\n\
                    b +Inf\n\
                    c{} -Inf\n\
                    d\t1e-3\t-5\n";
        let got: Vec<_> = samples(text).collect::<Result<_, _>>().expect("all parse");
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].name, "a");
        assert_eq!(got[0].labels[0].1, "C:\\x");
        assert_eq!(got[0].labels[1].1, "say \"hi\"\n");
        assert!(got[0].value.is_nan());
        assert_eq!(got[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(got[1].value, f64::INFINITY);
        assert_eq!(got[2].value, f64::NEG_INFINITY);
        assert_eq!(got[3].value, 1e-3);
        assert_eq!(got[3].timestamp_ms, Some(-5));
        let m = sel(r#"a{msg="say \"hi\"\n"}"#);
        assert_eq!(extract(text, &[&m]).values.len(), 1);
        assert!(extract(text, &[&m]).values[0].is_some_and(f64::is_nan));
    }

    #[test]
    fn bad_lines_are_skipped_and_counted() {
        let text = "good 1\nfoo-bar 2\nx{a=\"unterminated} 3\ny notanumber\nz 1 2 3\nw 1 x\n9bad 1\ngood2 2\n";
        let (g, g2) = (sel("good"), sel("good2"));
        let e = extract(text, &[&g, &g2]);
        assert_eq!(e.values, vec![Some(1.0), Some(2.0)]);
        assert_eq!(e.bad_lines, 6);
    }

    #[test]
    fn first_match_wins_and_extra_labels_are_ignored() {
        let text = "m{job=\"a\",quantile=\"0.99\"} 5\nm{quantile=\"0.99\"} 6\n";
        let s = sel(r#"m{quantile="0.99"}"#);
        assert_eq!(extract(text, &[&s]).values, vec![Some(5.0)]);
    }

    #[test]
    fn selector_round_trips_through_display() {
        for s in ["m", r#"m{quantile="0.99"}"#, r#"m{a="x\"y",b="z\\"}"#] {
            assert_eq!(sel(s).to_string(), s);
        }
        assert!(Selector::parse("").is_err());
        assert!(Selector::parse("m{").is_err());
        assert!(Selector::parse("m{a=\"b\"} x").is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(text in "\\PC*") {
            let _ = samples(&text).count();
            let _ = Selector::parse(&text);
        }

        #[test]
        fn parser_never_panics_on_exposition_like_text(
            text in "([a-z_]{1,4}(\\{([a-z]{1,3}=\"([^\"\\\\]|\\\\.){0,4}\",?){0,3}\\})? ?[-+0-9.eEInfNa ]{0,8}\n?){0,6}"
        ) {
            let _ = samples(&text).count();
        }

        #[test]
        fn generated_samples_parse_back(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            label in "[a-z_][a-z0-9_]{0,5}",
            lv in "\\PC{0,8}",
            v in proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
        ) {
            let sel = Selector { name: name.clone(), labels: vec![(label.clone(), lv.clone())] };
            let line = format!("{sel} {v:e}\n");
            let got: Vec<_> = samples(&line).collect();
            prop_assert_eq!(got.len(), 1);
            let s = got[0].clone().expect("parses");
            prop_assert_eq!(s.value, v);
            prop_assert!(sel.matches(&s));
        }
    }
}
