//! The commented default configuration file that the package installs as
//! `/etc/thrashguard/thrashguard.toml`.
//!
//! Owns its rendering from two sources that tests keep complete: the keys and defaults of
//! [`Config::default`] (walked generically, so a key added later appears without a change
//! here) and the meaning and range of each key from the configuration reference
//! (`docs/configuration.md`, handed in as text). Every key is written commented out with
//! its default, so the file as shipped parses to exactly the defaults, and so does the file
//! with every key uncommented. Must never read the reference itself: the edge hands it in.

use crate::config::Config;

/// Width of the comment lines.
const WIDTH: usize = 96;

/// What the reference says about one key (`| \`table.key\` | default | range | meaning |`).
#[derive(Debug, Default)]
struct KeyDoc<'a> {
    range: &'a str,
    meaning: &'a str,
}

/// The cells of a markdown table row, with `\|` kept inside a cell.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    out
}

/// Rows of the reference: dotted key -> (range, meaning); `## \`[table]\`: title` -> title.
struct Reference {
    keys: Vec<(String, String, String)>,
    titles: Vec<(String, String)>,
}

impl Reference {
    fn parse(md: &str) -> Reference {
        let mut keys = Vec::new();
        let mut titles = Vec::new();
        for line in md.lines() {
            if let Some(rest) = line.strip_prefix("## `[")
                && let Some((table, title)) = rest.split_once("]`")
            {
                titles.push((table.to_string(), title.trim_start_matches(':').trim().to_string()));
            } else if line.starts_with("| `") {
                let c = cells(line);
                if let [key, _default, range, meaning, ..] = c.as_slice()
                    && key.starts_with('`')
                    && key.ends_with('`')
                {
                    keys.push((key.trim_matches('`').to_string(), range.clone(), meaning.clone()));
                }
            }
        }
        Reference { keys, titles }
    }

    fn key(&self, dotted: &str) -> KeyDoc<'_> {
        self.keys.iter().find(|(k, _, _)| k == dotted).map(|(_, range, meaning)| KeyDoc { range, meaning }).unwrap_or_default()
    }

    fn title(&self, table: &str) -> Option<&str> {
        self.titles.iter().find(|(t, _)| t == table).map(|(_, title)| title.as_str())
    }
}

/// Append `text` as `# ` comment lines wrapped at [`WIDTH`].
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
}

/// One table: its keys (commented out with their defaults and docs), then its sub-tables.
fn table(out: &mut String, path: &str, t: &toml::Table, reference: &Reference) {
    if !path.is_empty() {
        out.push('\n');
        match reference.title(path) {
            Some(title) => comment(out, &format!("[{path}]: {title}")),
            None => comment(out, &format!("[{path}]")),
        }
        out.push_str(&format!("[{path}]\n"));
    }
    let dotted = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    // In the reference's order (curated), keys it lacks last.
    let mut keys: Vec<(&String, &toml::Value)> = t.iter().filter(|(_, v)| !v.is_table()).collect();
    keys.sort_by_key(|(k, _)| reference.keys.iter().position(|(d, _, _)| *d == dotted(k)).unwrap_or(usize::MAX));
    for (key, value) in keys {
        let dotted = dotted(key);
        let doc = reference.key(&dotted);
        out.push('\n');
        if !doc.meaning.is_empty() {
            comment(out, doc.meaning);
        }
        if !doc.range.is_empty() {
            comment(out, &format!("range: {}", doc.range));
        }
        out.push_str(&format!("#{key} = {value}\n"));
    }
    let mut tables: Vec<(String, &toml::Table)> = t.iter().filter_map(|(k, v)| v.as_table().map(|sub| (dotted(k), sub))).collect();
    tables.sort_by_key(|(p, _)| reference.titles.iter().position(|(t, _)| t == p).unwrap_or(usize::MAX));
    for (sub_path, sub) in tables {
        table(out, &sub_path, sub, reference);
    }
}

/// The commented default configuration file, from [`Config::default`] and the text of
/// the configuration reference (`docs/configuration.md`).
pub fn render(reference_md: &str) -> String {
    let reference = Reference::parse(reference_md);
    let defaults: toml::Table = toml::from_str(&Config::default_toml()).unwrap_or_default();
    let mut out = String::new();
    comment(&mut out, "thrashguard configuration: /etc/thrashguard/thrashguard.toml");
    out.push_str("#\n");
    comment(
        &mut out,
        "Every key is commented out and shows its built-in default, so a new package version's \
         defaults apply until you set a key here. To change one, remove the `#` before it and edit \
         the value. `thrashguard check-config` validates the file; the daemon refuses an invalid \
         one (exit 78, systemd does not restart-loop on it). `thrashguard default-config` prints \
         the defaults. Reference: /usr/share/doc/thrashguard/configuration.md, thrashguard(8). \
         Apply a change with `systemctl restart thrashguard`.",
    );
    table(&mut out, "", &defaults, &reference);
    out
}

/// `text` with every commented-out key line (`#key = value`) made active.
pub fn uncomment_keys(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) && rest.contains(" = ") => rest,
            _ => l,
        })
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../../docs/configuration.md");

    #[test]
    fn shipped_file_is_exactly_the_defaults() {
        let text = render(REFERENCE);
        assert_eq!(Config::parse(&text).expect("parses"), Config::default());
        // the values shown are the defaults: uncommenting every key changes nothing
        let active = uncomment_keys(&text);
        assert_ne!(active, text);
        assert_eq!(Config::parse(&active).expect("uncommented parses"), Config::default());
    }

    #[test]
    fn every_key_is_shown_with_its_meaning() {
        let text = render(REFERENCE);
        let defaults: toml::Table = toml::from_str(&Config::default_toml()).expect("toml");
        fn walk(t: &toml::Table, path: &str, text: &str) {
            for (k, v) in t {
                let dotted = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match v {
                    toml::Value::Table(sub) => {
                        assert!(text.contains(&format!("\n[{dotted}]\n")), "no [{dotted}] header");
                        walk(sub, &dotted, text);
                    }
                    v => {
                        let line = format!("\n#{k} = {v}\n");
                        let at = text.find(&line).unwrap_or_else(|| panic!("{dotted}: no line {line:?}"));
                        // a comment line right above the key
                        let before = &text[..at];
                        assert!(before.lines().last().is_some_and(|l| l.starts_with("# ")), "{dotted}: no comment above");
                    }
                }
            }
        }
        walk(&defaults, "", &text);
        assert!(text.lines().all(|l| l.len() <= WIDTH + 40), "a line is far too long");
    }

    #[test]
    fn escaped_pipes_stay_in_their_cell() {
        assert_eq!(cells("| `a.b` | `1` | x \\| y | z |"), vec!["`a.b`", "`1`", "x | y", "z"]);
    }
}
