//! Editing the Raspberry Pi kernel command line file (`/boot/firmware/cmdline.txt`).
//!
//! The firmware reads the first line of the file as the kernel command line
//! (Raspberry Pi documentation, "Kernel command line (cmdline.txt)"), so the file must stay
//! one line: a broken file is a Pi that does not boot. This module edits it with these rules:
//! - exactly one non-empty line, or the file is refused (nothing is changed);
//! - the keys being set replace existing values in place; later duplicates of those keys are
//!   removed; missing keys are appended after the last parameter;
//! - every other byte stays as it was: other parameters, their order and spacing, blank
//!   lines, a CRLF or a missing final newline.
//!
//! Parameters are split like the kernel's `next_arg()` (lib/cmdline.c): on spaces and tabs,
//! with double quotes protecting spaces inside a value. A hand-rolled scanner because no
//! crate parses this one-line format while keeping byte positions. Pure code.

/// Why a command line file cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    /// The file has no parameters at all.
    #[error("it is empty (a kernel command line is one line of parameters)")]
    Empty,
    /// More than one non-empty line: the firmware reads only the first.
    #[error(
        "it has {0} non-empty lines; the firmware reads only the first, so it must be exactly one line"
    )]
    MultipleLines(usize),
    /// Not UTF-8 text or contains a NUL byte.
    #[error("it is not plain text (invalid UTF-8 or a NUL byte)")]
    NotText,
    /// A quote is not closed.
    #[error("a double quote is not closed")]
    UnclosedQuote,
}

/// One parameter: its byte span in the line and its key (text before the first `=`
/// outside quotes, or the whole token).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    start: usize,
    end: usize,
    key_end: usize,
}

fn tokens(line: &str) -> Result<Vec<Token>, CmdlineError> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let mut quoted = false;
        let mut key_end = None;
        while i < b.len() && (quoted || (b[i] != b' ' && b[i] != b'\t')) {
            match b[i] {
                b'"' => quoted = !quoted,
                b'=' if !quoted && key_end.is_none() => key_end = Some(i),
                _ => {}
            }
            i += 1;
        }
        if quoted {
            return Err(CmdlineError::UnclosedQuote);
        }
        out.push(Token {
            start,
            end: i,
            key_end: key_end.unwrap_or(i),
        });
    }
    Ok(out)
}

/// Finds the single command line in the file: byte range of the line's content (without its
/// `\n` or `\r\n`).
fn locate(text: &str) -> Result<(usize, usize), CmdlineError> {
    let mut found = Vec::new();
    let mut pos = 0;
    for raw in text.split_inclusive('\n') {
        let content = raw.strip_suffix('\n').unwrap_or(raw);
        let content = content.strip_suffix('\r').unwrap_or(content);
        if !content.trim().is_empty() {
            found.push((pos, pos + content.len()));
        }
        pos += raw.len();
    }
    match found.len() {
        0 => Err(CmdlineError::Empty),
        1 => Ok(found[0]),
        n => Err(CmdlineError::MultipleLines(n)),
    }
}

fn as_text(bytes: &[u8]) -> Result<&str, CmdlineError> {
    let text = std::str::from_utf8(bytes).map_err(|_| CmdlineError::NotText)?;
    if text.contains('\0') {
        return Err(CmdlineError::NotText);
    }
    Ok(text)
}

/// The command line of a file (its one non-empty line, without the line ending).
pub fn line(bytes: &[u8]) -> Result<&str, CmdlineError> {
    let text = as_text(bytes)?;
    let (a, b) = locate(text)?;
    tokens(&text[a..b])?;
    Ok(&text[a..b])
}

/// Values of every occurrence of `key` in a command line (`key=value`; a bare `key` gives
/// an empty value). Quotes are kept as written.
pub fn values(line: &str, key: &str) -> Vec<String> {
    let Ok(toks) = tokens(line) else {
        return Vec::new();
    };
    toks.iter()
        .filter(|t| &line[t.start..t.key_end] == key)
        .map(|t| {
            if t.key_end < t.end {
                line[t.key_end + 1..t.end].to_string()
            } else {
                String::new()
            }
        })
        .collect()
}

/// Sets `key=value` for each pair in the file's command line and returns the new file.
/// Unchanged input gives byte-identical output.
///
/// Errors: the file is refused (see [`CmdlineError`]); nothing is produced.
pub fn set(bytes: &[u8], params: &[(&str, String)]) -> Result<Vec<u8>, CmdlineError> {
    let text = as_text(bytes)?;
    let (a, b) = locate(text)?;
    let line = &text[a..b];
    let toks = tokens(line)?;
    if toks.is_empty() {
        return Err(CmdlineError::Empty);
    }
    // Edits as (start, end, replacement) in line coordinates; they never overlap.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut appended = String::new();
    for (key, value) in params {
        let wanted = format!("{key}={value}");
        let mut first = true;
        for (i, t) in toks.iter().enumerate() {
            if &line[t.start..t.key_end] != *key {
                continue;
            }
            if first {
                edits.push((t.start, t.end, wanted.clone()));
                first = false;
            } else {
                // Remove the duplicate and the spaces before it.
                let prev_end = if i == 0 { 0 } else { toks[i - 1].end };
                edits.push((prev_end, t.end, String::new()));
            }
        }
        if first {
            appended.push(' ');
            appended.push_str(&wanted);
        }
    }
    let last_end = toks.last().map(|t| t.end).unwrap_or(0);
    if !appended.is_empty() {
        edits.push((last_end, last_end, appended));
    }
    edits.sort_by(|x, y| y.0.cmp(&x.0).then(y.1.cmp(&x.1)));
    let mut new_line = line.to_string();
    for (s, e, r) in edits {
        new_line.replace_range(s..e, &r);
    }
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&text[..a]);
    out.push_str(&new_line);
    out.push_str(&text[b..]);
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet splash plymouth.ignore-udev\n";

    fn ours() -> Vec<(&'static str, String)> {
        vec![
            ("isolcpus", "2,3".into()),
            ("nohz_full", "2,3".into()),
            ("rcu_nocbs", "2,3".into()),
            ("irqaffinity", "0,1".into()),
        ]
    }

    #[test]
    fn appends_to_stock_line() {
        let out = set(STOCK.as_bytes(), &ours()).unwrap();
        let want = STOCK.trim_end().to_string()
            + " isolcpus=2,3 nohz_full=2,3 rcu_nocbs=2,3 irqaffinity=0,1\n";
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        // Idempotent.
        assert_eq!(set(&out, &ours()).unwrap(), out);
    }

    #[test]
    fn replaces_in_place_and_removes_duplicates() {
        let input = "root=/dev/x isolcpus=1  quiet isolcpus=3 splash\n";
        let out = String::from_utf8(set(input.as_bytes(), &ours()).unwrap()).unwrap();
        assert_eq!(
            out,
            "root=/dev/x isolcpus=2,3  quiet splash nohz_full=2,3 rcu_nocbs=2,3 irqaffinity=0,1\n"
        );
        assert_eq!(values(&out, "isolcpus"), vec!["2,3"]);
    }

    #[test]
    fn keeps_crlf_missing_newline_and_trailing_spaces() {
        let out = set(b"a=1 b\r\n", &[("k", "v".into())]).unwrap();
        assert_eq!(out, b"a=1 b k=v\r\n");
        let out = set(b"a=1", &[("k", "v".into())]).unwrap();
        assert_eq!(out, b"a=1 k=v");
        let out = set(b"\n a=1  \n\n", &[("k", "v".into())]).unwrap();
        assert_eq!(out, b"\n a=1 k=v  \n\n");
    }

    #[test]
    fn quoted_values_are_one_parameter() {
        let input = "dyndbg=\"file x.c +p\" isolcpus=1\n";
        let out =
            String::from_utf8(set(input.as_bytes(), &[("isolcpus", "2".into())]).unwrap()).unwrap();
        assert_eq!(out, "dyndbg=\"file x.c +p\" isolcpus=2\n");
    }

    #[test]
    fn refuses_bad_files() {
        assert_eq!(set(b"", &ours()), Err(CmdlineError::Empty));
        assert_eq!(set(b" \n\n", &ours()), Err(CmdlineError::Empty));
        assert_eq!(
            set(b"a=1\nb=2\n", &ours()),
            Err(CmdlineError::MultipleLines(2))
        );
        assert_eq!(set(b"a=\"1\n", &ours()), Err(CmdlineError::UnclosedQuote));
        assert_eq!(set(b"a=\xff\n", &ours()), Err(CmdlineError::NotText));
    }

    #[test]
    fn key_match_is_exact() {
        // `isolcpus_x` and `xisolcpus` are other parameters.
        let out = set(b"isolcpus_x=1 xisolcpus=2\n", &[("isolcpus", "3".into())]).unwrap();
        assert_eq!(out, b"isolcpus_x=1 xisolcpus=2 isolcpus=3\n");
    }
}
